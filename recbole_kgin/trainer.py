# -*- coding: utf-8 -*-
"""Trainers: the one for KGIN, and a mixin that every model run through this package gets.

The mixin changes nothing in what RecBole trains or evaluates (same steps, same random numbers,
same early stopping). It

* writes safe checkpoints (:mod:`recbole_kgin.checkpoint`: plain data, ``weights_only`` loading)
  atomically after every epoch (or at most once per ``checkpoint_interval_s``, and when training
  ends): the best weights so far plus everything needed to resume;
* resumes from such a checkpoint exactly: weights, optimizer, every random number generator,
  early-stopping state, history (:meth:`RecordingTrainerMixin.resume_checkpoint`);
* stops on a NaN or infinite loss, naming the epoch and the step;
* records the wall time of every training epoch and every validation result, so that comparisons
  and searches report the same numbers from one place.
"""

import time

import torch

from recbole.trainer import Trainer
from recbole.utils import KGDataLoaderState, dict2str, early_stopping, set_color

from recbole_kgin import checkpoint as ckpt


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


def load_checkpoint(path, device="cpu", trust=False):
    """Read a checkpoint (:func:`recbole_kgin.checkpoint.load`); tensors on ``device``."""
    data = ckpt.load(path, trust=trust)
    if str(device) != "cpu":
        data["state_dict"] = {k: v.to(device) for k, v in data["state_dict"].items()}
    return data


def _copy_state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class _LastStructEvaluator:
    """RecBole's evaluator, keeping the data it last evaluated (the top-K hits of every user), so
    that per-user metrics can be computed after an evaluation without ranking again."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.last_struct = None

    def evaluate(self, struct):
        self.last_struct = struct
        return self.evaluator.evaluate(struct)


class RecordingTrainerMixin:
    """Put in front of any RecBole trainer class (see :func:`recbole_kgin.utils.get_trainer`)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole's TraditionalTrainer (Pop, ItemKNN, EASE, ...) forces one epoch after the eval step
        # was set: with eval_step > epochs no validation (and no checkpoint) would ever happen
        self.eval_step = min(self.eval_step, self.epochs)
        self.evaluator = _LastStructEvaluator(self.evaluator)
        self.epoch_seconds = []  # wall time of every training epoch
        self.valid_history = []  # (epoch index, valid score, valid result) per validation
        self.epoch_callback = None  # optional f(epoch_idx, valid_score, valid_result)
        # None: a checkpoint after every epoch; a number: at most one per that many seconds, plus
        # one when training ends (what is lost to a kill is bounded by it, plus an epoch)
        self.checkpoint_interval_s = None
        self._last_save = None
        self.best_epoch = None  # epoch (from 0) of the weights selected on validation
        self.finished = False  # training ended (last epoch or early stop)
        self._best_state = None
        self._pending_rng = None
        self._loaders = {}
        self._dataset = None
        self._identity = None  # (fingerprint, id mappings) of the training split
        self._epoch_idx = 0
        self._step = 0

    # ------------------------------------------------------------------ training
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        self._epoch_idx, self._step = epoch_idx, 0
        result = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_seconds.append(time.perf_counter() - start)
        return result

    def _check_nan(self, loss):
        self._step += 1
        if not bool(torch.isfinite(loss).all()):
            kind = "NaN" if bool(torch.isnan(loss).any()) else "infinite"
            raise TrainingDiverged(
                f"training loss is {kind} at epoch {self._epoch_idx + 1}, step {self._step}: "
                "training stopped (try a lower learning_rate); the last checkpoint is kept"
            )

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        epoch_idx = len(self.epoch_seconds) - 1
        self.valid_history.append((epoch_idx, float(valid_score), dict(valid_result)))
        if self.epoch_callback is not None:
            self.epoch_callback(epoch_idx, float(valid_score), dict(valid_result))
        return valid_score, valid_result

    @property
    def resumable(self):
        """Whether :meth:`fit` is this mixin's loop (checkpoints that resume exactly); trainers
        with their own ``fit`` keep it and cannot resume."""
        return self._base_fit() is Trainer.fit

    def _checkpoint_due(self):
        if self.checkpoint_interval_s is None or self.finished:
            return True
        return time.monotonic() - self._last_save >= self.checkpoint_interval_s

    def _base_fit(self):
        mro = type(self).__mro__
        for cls in mro[mro.index(RecordingTrainerMixin) + 1:]:
            if "fit" in cls.__dict__:
                return cls.__dict__["fit"]
        return None

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        """RecBole's training loop (same order of work, same early stopping), plus a checkpoint
        after every epoch and exact resumption. Trainers with their own ``fit`` keep it."""
        if self._base_fit() is not Trainer.fit:
            return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                               show_progress=show_progress, callback_fn=callback_fn)
        self._loaders = {"train": train_data, "valid": valid_data}
        self._dataset = train_data._dataset
        self.eval_collector.data_collect(train_data)
        if self.config["train_neg_sample_args"].get("dynamic", False):
            train_data.get_model(self.model)
        if self._pending_rng is not None:
            ckpt.set_rng_state(self._pending_rng, self._loaders)
            self._pending_rng = None
        if self.finished:
            return self.best_valid_score, self.best_valid_result
        validates = self.eval_step > 0 and bool(valid_data)
        self._last_save = time.monotonic()

        for epoch_idx in range(self.start_epoch, self.epochs):
            start = time.time()
            train_loss = self._train_epoch(train_data, epoch_idx, show_progress=show_progress)
            self.train_loss_dict[epoch_idx] = (
                sum(train_loss) if isinstance(train_loss, tuple) else train_loss
            )
            if verbose:
                self.logger.info(self._generate_train_loss_output(
                    epoch_idx, start, time.time(), train_loss))
            self._add_train_loss_to_tensorboard(epoch_idx, train_loss)
            stop = False
            if not validates:
                self.best_epoch = epoch_idx  # RecBole keeps the last epoch's weights
                if saved:
                    self._best_state = _copy_state(self.model)
            elif (epoch_idx + 1) % self.eval_step == 0:
                valid_start = time.time()
                valid_score, valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
                self.best_valid_score, self.cur_step, stop, update = early_stopping(
                    valid_score, self.best_valid_score, self.cur_step,
                    max_step=self.stopping_step, bigger=self.valid_metric_bigger,
                )
                if verbose:
                    self.logger.info(
                        (set_color("epoch %d evaluating", "green") + " ["
                         + set_color("time", "blue") + ": %.2fs, "
                         + set_color("valid_score", "blue") + ": %f]")
                        % (epoch_idx, time.time() - valid_start, valid_score))
                    self.logger.info(set_color("valid result", "blue") + ": \n"
                                     + dict2str(valid_result))
                self.tensorboard.add_scalar("Vaild_score", valid_score, epoch_idx)
                if update:
                    self.best_valid_result = valid_result
                    self.best_epoch = epoch_idx
                    if saved:
                        self._best_state = _copy_state(self.model)
                if callback_fn:
                    callback_fn(epoch_idx, valid_score)
                if stop and verbose:
                    self.logger.info("Finished training, best eval result in epoch %d"
                                     % (epoch_idx - self.cur_step * self.eval_step))
            self.finished = stop or epoch_idx == self.epochs - 1
            if saved and self._checkpoint_due():
                self._save_checkpoint(epoch_idx, verbose=verbose)
                self._last_save = time.monotonic()
            if stop:
                break
        self._add_hparam_to_tensorboard(self.best_valid_score)
        return self.best_valid_score, self.best_valid_result

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, epoch):
        """The safe checkpoint after ``epoch`` (see :mod:`recbole_kgin.checkpoint`)."""
        config = self.config
        if self._identity is None and self._dataset is not None:
            self._identity = (ckpt.dataset_fingerprint(self._dataset),
                              ckpt.id_mappings(self._dataset))
        fingerprint, mappings = self._identity or (None, {})
        best_state = self._best_state if self._best_state is not None else _copy_state(self.model)
        return {
            "format": ckpt.FORMAT, "version": ckpt.VERSION,
            "model": config["model"], "dataset": config["dataset"],
            "config": ckpt.plain(dict(config.final_config_dict)),
            "config_overrides": ckpt.plain(dict(config.external_config_dict)),
            "dataset_fingerprint": fingerprint,
            "id_mappings": mappings,
            "state_dict": best_state,
            "other_parameter": ckpt.pack_other(self.model.other_parameter()),
            "best": {"epoch": self.best_epoch, "valid_score": float(self.best_valid_score),
                     "valid_result": ckpt.plain(self.best_valid_result)},
            "training": {
                "epoch": epoch, "finished": self.finished, "epochs": self.epochs,
                "state_dict": _copy_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "rng": ckpt.rng_state(self._loaders),
                "cur_step": self.cur_step,
                "best_valid_score": float(self.best_valid_score),
                "best_valid_result": ckpt.plain(self.best_valid_result),
                "train_loss": {int(k): ckpt.plain(v) for k, v in self.train_loss_dict.items()},
                "epoch_seconds": list(self.epoch_seconds),
                "valid_history": [[e, s, ckpt.plain(r)] for e, s, r in self.valid_history],
            },
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        ckpt.save(self.checkpoint_dict(epoch), path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def _restore_weights(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(ckpt.unpack_other(checkpoint.get("other_parameter")))

    def resume_checkpoint(self, resume_file, checkpoint=None):
        """Continue the run saved in ``resume_file`` (a dict already loaded may be passed)."""
        checkpoint = checkpoint or load_checkpoint(resume_file)
        state = checkpoint.get("training")
        if not state:
            raise ckpt.CheckpointError(
                f"checkpoint {resume_file} holds no training state (written by RecBole or "
                "converted): it can be evaluated, not resumed")
        self.saved_model_file = str(resume_file)
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(ckpt.unpack_other(checkpoint.get("other_parameter")))
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = int(state["epoch"]) + 1
        self.finished = bool(state["finished"])
        self.cur_step = int(state["cur_step"])
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.best_epoch = checkpoint["best"]["epoch"]
        self._best_state = {k: v.clone() for k, v in checkpoint["state_dict"].items()}
        self.train_loss_dict = {int(k): v for k, v in state["train_loss"].items()}
        self.epoch_seconds = list(state["epoch_seconds"])
        self.valid_history = [(int(e), float(s), dict(r)) for e, s, r in state["valid_history"]]
        self._pending_rng = state["rng"]
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            self._restore_weights(load_checkpoint(checkpoint_file, self.device))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
        )


ADAM_IMPLS = ("auto", "loop", "foreach", "fused")


def adam_options(impl, device="cpu"):
    """Keyword arguments of ``torch.optim.Adam`` for ``adam_impl`` on ``device``: ``loop`` (one set
    of operations per parameter, RecBole's CPU default), ``foreach`` (one multi-tensor operation
    per update term; the same numbers as ``loop``, tested), ``fused`` (one kernel for the whole
    update; equal to ``loop`` up to rounding, about 1e-7, tested), ``auto``: ``fused`` on CPU (4
    operations per step instead of 20, and about 3x faster there), ``foreach`` on other devices
    (``fused`` stays a choice there until it has been tested on a GPU here)."""
    if impl not in ADAM_IMPLS:
        raise ValueError(f"config key 'adam_impl' = {impl!r}: expected one of {ADAM_IMPLS}")
    if impl == "auto":
        impl = "fused" if torch.device(device).type == "cpu" else "foreach"
    return {"loop": {"foreach": False}, "foreach": {"foreach": True},
            "fused": {"fused": True}}[impl]


def device_negatives(train_data, model, device):
    """Turn off the negative sampling of RecBole's training loader ``train_data`` and return
    ``add(interaction)``, which puts one negative per pair, drawn on ``device`` from the same
    distribution (:mod:`recbole_kgin.data.device_negatives`), into a batch."""
    from recbole.data.interaction import Interaction

    from recbole_kgin.data.device_negatives import DeviceNegatives

    loader = getattr(train_data, "general_dataloader", train_data)
    args = loader.neg_sample_args
    if args.get("distribution") != "none":
        if args.get("distribution") != "uniform" or args.get("sample_num") != 1 or \
                args.get("dynamic"):
            raise ValueError("config key 'neg_sampling_device' = True needs "
                             "train_neg_sample_args: uniform, sample_num 1, not dynamic")
        loader.neg_sample_args = dict(args, distribution="none")
    sampler = DeviceNegatives(loader._dataset, device)

    def add(interaction):
        negatives = sampler.sample(interaction[model.USER_ID])
        interaction.update(Interaction({model.NEG_ITEM_ID: negatives}))
        return interaction

    return add


def cuda_graph_problem(config, device):
    """Why ``cuda_graph: True`` cannot run with ``config`` on ``device`` (None when it can)."""
    if torch.device(device).type != "cuda":
        return f"needs a CUDA device (training runs on {torch.device(device).type})"
    if not config["static_graph"]:
        return "needs static_graph: True (the same shapes at every step)"
    if str(config["learner"]).lower() != "adam":
        return f"needs learner: adam (got {config['learner']!r})"
    if config["clip_grad_norm"] or config["enable_amp"] or config["enable_scaler"]:
        return "cannot be combined with clip_grad_norm, enable_amp or enable_scaler"
    return None


class KGINTrainer(Trainer):
    """KGIN learns from user-item pairs only: the knowledge graph enters through propagation, so the
    loader runs in RS mode and no KG triplet batches are sampled (RecBole's default KG trainer would
    sample and discard one per step). Its Adam runs as ``adam_impl`` says (:func:`adam_options`).
    With ``cuda_graph`` each step is a replay of a recorded CUDA graph
    (:mod:`recbole_kgin.graphed_step`)."""

    def __init__(self, config, model):
        if config["cuda_graph"]:
            problem = cuda_graph_problem(config, config["device"])
            if problem:
                raise ValueError(f"config key 'cuda_graph' = True: {problem}")
        super().__init__(config, model)
        self._graphed = None

    def _build_optimizer(self, **kwargs):
        learner = kwargs.get("learner", self.learner)
        if str(learner).lower() != "adam":
            return super()._build_optimizer(**kwargs)
        params = kwargs.get("params", self.model.parameters())
        options = adam_options(self.config["adam_impl"] or "auto", self.device)
        if self.config["cuda_graph"]:
            options["capturable"] = True  # its step counter lives on the GPU: recordable
        return torch.optim.Adam(
            params, lr=kwargs.get("learning_rate", self.learning_rate),
            weight_decay=kwargs.get("weight_decay", self.weight_decay), **options)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        train_data.set_mode(KGDataLoaderState.RS)
        if self.config["cuda_graph"] and loss_func is None:
            return self._graphed_epoch(train_data, epoch_idx, show_progress)
        if self.config["neg_sampling_device"]:
            loss_func = self._device_negatives_loss(train_data, loss_func)
        return super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )

    def _graphed_epoch(self, train_data, epoch_idx, show_progress=False, capture=None):
        """RecBole's epoch (batches to the device, summed loss, the NaN check of every step) with
        every step run by a :class:`~recbole_kgin.graphed_step.GraphedStep`."""
        from tqdm import tqdm

        from recbole_kgin.graphed_step import GraphedStep, cuda_capture

        model = self.model
        if self._graphed is None:
            self._graphed = GraphedStep(model, self.optimizer,
                                        (model.USER_ID, model.ITEM_ID, model.NEG_ITEM_ID),
                                        capture=capture or cuda_capture)
        add = self._negatives_adder(train_data) if self.config["neg_sampling_device"] else None
        model.train()
        batches = tqdm(train_data, total=len(train_data), ncols=100,
                       desc=set_color(f"Train {epoch_idx:>5}", "pink")) if show_progress \
            else train_data
        total = None
        for interaction in batches:
            interaction = interaction.to(self.device)
            if add is not None:
                interaction = add(interaction)
            loss = self._graphed(interaction)
            total = loss.item() if total is None else total + loss.item()
            self._check_nan(loss)
        return total

    def _device_negatives_loss(self, train_data, loss_func):
        """``neg_sampling_device``: RecBole's loader stops drawing negatives, and every batch gets
        its negatives on the training device (:func:`device_negatives`)."""
        add, loss_func = self._negatives_adder(train_data), loss_func or self.model.calculate_loss
        return lambda interaction: loss_func(add(interaction))

    def _negatives_adder(self, train_data):
        """:func:`device_negatives` for ``train_data``, built once per trainer."""
        if getattr(self, "_add_negatives", None) is None:
            self._add_negatives = device_negatives(train_data, self.model, self.device)
        return self._add_negatives
