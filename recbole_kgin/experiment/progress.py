# -*- coding: utf-8 -*-
"""Progress of a search or of seed runs on the console: one line per finished trial (its validation
score and the best so far) and, about every minute, a line with the runs done, the time spent and
an estimate of the time left. On a terminal the progress line is a bar redrawn in place; in a log
file it is a plain line."""

import sys
import time

INTERVAL_S = 60.0


def duration(seconds):
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def better(a, b, bigger):
    if b is None:
        return True
    return a > b if bigger else a < b


def eta(done, total, elapsed, running=0.0):
    """Seconds left at the mean time per run so far, when ``done`` runs have ended and the running
    ones are ``running`` of a run along (epochs run / epoch cap, summed; with early stopping an
    upper bound); None before any progress."""
    progress = done + running
    if progress <= 0:
        return None
    return max(0.0, elapsed / progress * (total - progress))


def progress_line(label, unit, done, total, elapsed, best, metric, bar=False, running=0.0,
                  before=0):
    """``before``: runs that had ended when the experiment was restored; ``elapsed`` counts from
    the restore, so the time left uses the rate of the runs since then."""
    left = eta(done - before, total - before, elapsed, running)
    parts = [f"{done}/{total} {unit}" + (f" ({before} before the resume)" if before else "")]
    if best is not None:
        parts.append(f"best {metric} {best:.4f}")
    parts.append(f"{duration(elapsed)} elapsed")
    parts.append("time left unknown" if left is None else f"about {duration(left)} left")
    text = f"{label}: " + ", ".join(parts)
    if bar:
        width = 20
        filled = int(width * done / total) if total else width
        text = f"{label} [{'#' * filled}{'.' * (width - filled)}] " + ", ".join(parts)
    return text


def trial_line(label, unit, number, total, score, best, metric, status="finished"):
    score_text = "no validation" if score is None else f"{metric} {score:.4f}"
    best_text = "" if best is None else f" (best so far {best:.4f})"
    return f"{label}: {unit[:-1] if unit.endswith('s') else unit} {number}/{total} {status}, " \
           f"{score_text}{best_text}"


def callback(label, total, metric, bigger, unit="trials", out=None, interval=None,
             clock=time.monotonic, epochs=None):
    """A Ray Tune callback printing :func:`trial_line` and :func:`progress_line`."""
    from ray.tune import Callback

    def stream():  # looked up at each line: the callback is pickled with the experiment
        return out or sys.stdout

    class Progress(Callback):
        def __init__(self):
            self.start = clock()
            self.last_line = self.start
            self.done = 0
            self.best = None
            self.scores = {}
            self.epochs_run = {}  # running trials: epochs so far
            self.tty = hasattr(stream(), "isatty") and stream().isatty()
            self.redrawn = False
            self.ended = set()  # trial ids counted in done
            self.before_resume = 0  # runs that had ended when the experiment was restored

        def _print(self, text, redraw=False):
            if self.tty and redraw:  # the bar, redrawn in place
                stream().write("\r" + text)
                self.redrawn = True
            else:
                if self.redrawn:
                    stream().write("\n")
                    self.redrawn = False
                stream().write(text + "\n")
            stream().flush()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            score = result.get("best_valid_score", result.get("valid_score"))
            if score is not None:
                self.scores[trial.trial_id] = float(score)
            if result.get("epochs_run") is not None:
                self.epochs_run[trial.trial_id] = int(result["epochs_run"])

        def _end(self, trial, status):
            if trial.trial_id in self.ended:
                return
            self.ended.add(trial.trial_id)
            self.done += 1
            self.epochs_run.pop(trial.trial_id, None)
            score = self.scores.get(trial.trial_id)
            if score is not None and better(score, self.best, bigger):
                self.best = score
            self._print(trial_line(label, unit, self.done, total, score, self.best, metric,
                                   status))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial, "finished")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "failed")

        def _catch_up(self, trials):
            """A restored experiment (``--resume``): the runs that ended before it was restored
            count as done, their scores in the best, and the time and the rate restart now (the
            callback comes back as it was pickled when the experiment started)."""
            gone = [t for t in trials if getattr(t, "status", None) in ("TERMINATED", "ERROR")
                    and t.trial_id not in self.ended]
            if not gone:
                return
            for t in gone:
                self.ended.add(t.trial_id)
                result = getattr(t, "last_result", None) or {}
                score = result.get("best_valid_score", result.get("valid_score"))
                if score is not None and better(float(score), self.best, bigger):
                    self.best = float(score)
            self.done += len(gone)
            self.before_resume = self.done
            self.start = self.last_line = clock()

        def on_step_end(self, iteration, trials, **info):
            self._catch_up(trials)
            now = clock()
            if now - self.last_line >= (INTERVAL_S if interval is None else interval):
                self.last_line = now
                running = (sum(min(e, epochs) for e in self.epochs_run.values()) / epochs
                           if epochs else 0.0)
                self._print(progress_line(label, unit, self.done, total, now - self.start,
                                          self.best, metric, bar=self.tty, running=running,
                                          before=self.before_resume),
                            redraw=True)

        def on_experiment_end(self, trials, **info):
            if self.redrawn:
                stream().write("\n")
                stream().flush()
                self.redrawn = False

    return Progress()
