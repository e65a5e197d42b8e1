# -*- coding: utf-8 -*-
"""Checkpoints that are safe to share and that survive a kill.

A checkpoint is a dict of plain data (numbers, strings, lists, dicts, tensors) and loads with
``torch.load(weights_only=True)``: nothing in it runs code when it is read. It holds

* ``format`` / ``version``: :data:`FORMAT`, :data:`VERSION`;
* ``content_sha256``: the content digest (:func:`content_digest`) of everything else in the file;
* ``model``, ``dataset``: names; ``config``: the run's final configuration as plain data (for reading);
  ``config_overrides``: what the run was given on top of the property files (used to rebuild it);
* ``dataset_fingerprint``: a digest of the id vocabularies, the training pairs and the KG triplets;
  ``id_mappings``: internal id -> original token for users, items, entities and relations;
* ``state_dict`` / ``other_parameter``: the weights selected on validation (the best epoch);
  ``best``: that epoch (counted from 0), its validation score and result;
* ``training``: what resuming needs: the last epoch finished, whether training is over, the weights
  and optimizer state after that epoch, every random number generator, early-stopping state, losses,
  epoch times and validation history.

torch does not check the data it reads back (a byte flipped inside a weight tensor loads without
complaint), so :func:`save` seals every checkpoint with a SHA-256 digest over the bytes of every
tensor (weights, optimizer state, random number generators, other parameters) and a canonical
serialisation of the plain data, and :func:`load` refuses a file whose content does not match it,
with a one-line error naming the file. Format version 2 added the digest; a version 1 checkpoint
(no digest) still loads, with a one-line notice on stderr that its data cannot be verified.

Files are written atomically: a temporary file in the same directory, flushed and fsync'ed, then
renamed over the target (and the directory fsync'ed), so a kill at any moment leaves either the
previous checkpoint or the new one, never a torn file. A temporary file's name carries its writer's
PID and host (``.<name>.tmp-<pid>-<host>-<random>``); one left by a writer that is gone is removed
by the next successful write into the same directory, one of a live writer is left alone.
"""

import enum
import hashlib
import json
import os
import pickle
import random
import socket
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from recbole_kgin.errors import OutputError, UsageError, os_error_line
from recbole_kgin.processes import pid_alive

FORMAT = "recbole-kgin-checkpoint"
VERSION = 2  # 2: content digest (``content_sha256``); 1: none
DIGEST_KEY = "content_sha256"
DIGEST_SINCE = 2  # the first format version that always holds a digest


class CheckpointError(UsageError):
    """A checkpoint that cannot be used: missing, damaged, unsafe or for other data (one line)."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag():
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temp_prefix(name):
    return f".{name}.tmp-"


def remove_stale_temps(folder, target_name=None):
    """Remove the temporary files that killed writers left in ``folder``: those whose name carries
    a PID of this host that no longer runs, and (names of older versions carry no PID) those of
    ``target_name``. A live writer's file and one written on another host are left alone."""
    host = _host_tag()
    removed = []
    for entry in Path(folder).glob(".*.tmp-*"):
        parts = entry.name.rsplit(".tmp-", 1)[1].split("-")
        if len(parts) == 3 and parts[0].isdigit() and len(parts[1]) == 8:
            stale = parts[1] == host and not pid_alive(int(parts[0]))
        else:
            stale = target_name is not None and entry.name.startswith(_temp_prefix(target_name))
        if stale and entry.is_file():
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def atomic_write(path, write):
    """Write ``path`` through ``write(binary_file)`` atomically; the result has the usual mode
    (0666 minus the umask), not the 0600 of a temporary file. An OS error (disk full, permission,
    a file in the way, a name too long) becomes one :class:`~recbole_kgin.errors.OutputError`
    line naming ``path``; the previous file is kept and no temporary file is left."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path.name)}{os.getpid()}-{_host_tag()}-",
                                   dir=str(path.parent))
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise OutputError(os_error_line(exc, path)) from None
        raise
    remove_stale_temps(path.parent, path.name)
    try:
        dir_fd = os.open(str(path.parent), os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path, text):
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path, data):
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save(checkpoint, path):
    """Write a checkpoint dict atomically, sealed with its content digest (see the module
    docstring); ``checkpoint`` itself is not changed (a digest already in it is replaced)."""
    sealed = {k: v for k, v in checkpoint.items() if k != DIGEST_KEY}
    sealed[DIGEST_KEY] = content_digest(sealed)
    return atomic_write(path, lambda handle: torch.save(sealed, handle))


# ---------------------------------------------------------------------------------- content digest
def content_digest(checkpoint):
    """SHA-256 (hex) of a checkpoint dict, its ``content_sha256`` entry left out.

    Every value is fed with a type tag and its length: tensors as dtype, shape and their raw bytes
    (little-endian, contiguous; a sparse tensor as its indices and values), dict entries sorted by
    their encoded keys, lists and tuples alike, floats exactly (``float.hex``), strings as UTF-8.
    The same content therefore gives the same digest before saving and after loading.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _tensor_bytes(tensor):
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if flat.numel() <= 1 and flat.stride() != (1,):  # "contiguous" with a 0 stride (e.g. empty)
        flat = flat.new_empty(flat.shape).copy_(flat)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    raw = flat.view(torch.uint8)
    size = flat.element_size()
    if sys.byteorder == "big" and size > 1:
        raw = raw.reshape(-1, size).flip(1).reshape(-1)
    return raw.numpy()


def _feed(digest, value):
    if isinstance(value, torch.Tensor):
        if value.layout == torch.sparse_coo:
            value = value.detach().cpu().coalesce()
            digest.update(f"Z{value.dtype}{list(value.shape)};".encode())
            _feed(digest, value.indices())
            _feed(digest, value.values())
            return
        if value.layout != torch.strided:
            value = value.to_dense()
        digest.update(f"T{value.dtype}{list(value.shape)};".encode())
        digest.update(_tensor_bytes(value))
    elif isinstance(value, dict):
        entries = sorted(((_encoded(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        digest.update(f"D{len(entries)};".encode())
        for key, item in entries:
            digest.update(key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(_encoded(value))


def _encoded(value):
    """A scalar's canonical bytes (also used as dict keys' sort order)."""
    if value is None:
        return b"N;"
    if isinstance(value, bool):
        return b"B1;" if value else b"B0;"
    if isinstance(value, int):
        return f"I{int(value)};".encode()
    if isinstance(value, float):
        return f"F{float(value).hex()};".encode()
    if isinstance(value, str):
        data = str(value).encode("utf-8", "surrogatepass")
        return b"S%d:" % len(data) + data
    if isinstance(value, (bytes, bytearray)):
        return b"Y%d:" % len(value) + bytes(value)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    text = f"{kind}:{value!r}".encode("utf-8", "replace")
    return b"O%d:" % len(text) + text


# ---------------------------------------------------------------------------------- plain data
def plain(value):
    """``value`` as plain data: enums by name, devices and unknown objects as strings."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if isinstance(value, enum.Enum):  # before int: IntEnum members are ints
        return value.name
    if value is None or isinstance(value, (bool, int, float, str)):
        return type(value)(value) if value is not None else None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return str(value)


_PACKED = "__packed__"


def pack_other(params):
    """A model's ``other_parameter()`` (RecBole's closed-form models keep NumPy arrays and SciPy
    sparse matrices there: ItemKNN, EASE, ...) as data ``torch.load(weights_only=True)`` reads."""
    return {key: _pack(value) for key, value in (params or {}).items()}


def _pack(value):
    import scipy.sparse as sp

    if sp.issparse(value):
        coo = value.tocoo()
        return {_PACKED: f"scipy.{value.format}", "shape": list(value.shape),
                "row": torch.from_numpy(np.asarray(coo.row, dtype=np.int64)),
                "col": torch.from_numpy(np.asarray(coo.col, dtype=np.int64)),
                "data": torch.from_numpy(np.ascontiguousarray(coo.data))}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {_PACKED: "numpy", "array": torch.from_numpy(np.ascontiguousarray(value))}
    return plain(value)


def unpack_other(params):
    """The inverse of :func:`pack_other`; values that were not packed pass through unchanged."""
    if params is None:
        return None
    return {key: _unpack(value) for key, value in params.items()}


def _unpack(value):
    if not (isinstance(value, dict) and _PACKED in value):
        return value
    kind = value[_PACKED]
    if kind == "numpy":
        return value["array"].numpy()
    import scipy.sparse as sp

    matrix = sp.coo_matrix((value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())),
                           shape=tuple(value["shape"]))
    return matrix.asformat(kind.split(".", 1)[1])


# ---------------------------------------------------------------------------------- random state
def _loader_generators(loader, prefix):
    found = {}
    if loader is None:
        return found
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        found[prefix] = generator
    for sub in ("general_dataloader", "kg_dataloader"):
        inner = getattr(loader, sub, None)
        if inner is not None:
            found.update(_loader_generators(inner, f"{prefix}.{sub}"))
    return found


def loader_generators(loaders):
    """Every ``torch.Generator`` of the given ``{name: RecBole data loader}`` (shuffling and
    sampling order), keyed by a dotted name."""
    found = {}
    for name, loader in loaders.items():
        found.update(_loader_generators(loader, name))
    return found


def rng_state(loaders=None):
    """Python, NumPy, torch (CPU and CUDA) and data-loader generator states, as plain data."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": {k: g.get_state() for k, g in loader_generators(loaders or {}).items()},
    }
    return state


def set_rng_state(state, loaders=None):
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["key"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators = loader_generators(loaders or {})
    for name, saved in state["loaders"].items():
        if name in generators:
            generators[name].set_state(saved)


# ---------------------------------------------------------------------------------- dataset identity
def id_mappings(dataset):
    """Internal id -> original token for the user, item, entity and relation fields present."""
    mappings = {}
    for role, attr in (("user", "uid_field"), ("item", "iid_field"),
                       ("entity", "entity_field"), ("relation", "relation_field")):
        field = getattr(dataset, attr, None)
        if field and field in dataset.field2id_token:
            mappings[role] = [str(t) for t in dataset.field2id_token[field]]
    return mappings


def dataset_fingerprint(dataset):
    """SHA-256 over the id vocabularies, the (user, item) pairs of ``dataset`` (a training split)
    and the KG triplets: another conversion, another split or another filter gives another digest."""
    digest = hashlib.sha256()
    for role, tokens in id_mappings(dataset).items():
        digest.update(f"{role}:{len(tokens)}\n".encode())
        digest.update("\x00".join(tokens).encode("utf-8"))
    inter = dataset.inter_feat
    for field in (dataset.uid_field, dataset.iid_field):
        if field and field in inter:
            digest.update(np.ascontiguousarray(inter[field].numpy(), dtype=np.int64).tobytes())
    for attr in ("head_entities", "relations", "tail_entities"):
        values = getattr(dataset, attr, None) if hasattr(dataset, "kg_feat") else None
        if values is not None:
            digest.update(np.ascontiguousarray(np.asarray(values), dtype=np.int64).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- loading
def _summary(err):
    text = str(err).strip().splitlines()
    return text[0][:160] if text else type(err).__name__


def load(path, trust=False):
    """Read a checkpoint and return it as a dict in this module's format.

    Our checkpoints load with ``weights_only=True``. Anything else (e.g. a RecBole checkpoint,
    which pickles the run's ``Config``) is refused unless ``trust`` is set, because unpickling it
    can run arbitrary code; with ``trust`` it is read and converted (no dataset fingerprint, no
    training state: usable for evaluation, recommend and explain, not for resuming).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # torch's zip or a pickle
        raise CheckpointError(f"checkpoint {path} is truncated or not a checkpoint "
                              "(neither a torch file nor a pickle)")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower() and "weights_only" not in str(err).lower():
            raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint "
                                  f"({_summary(err)})") from None
        if not trust:
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects (e.g. a RecBole checkpoint) and "
                "is not loaded safely; pass --trust_checkpoint only if you trust where it came from"
            ) from None
        return _from_recbole(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or not a checkpoint "
                              f"({_summary(err)})") from None
    if isinstance(data, dict) and DIGEST_KEY in data:
        verify(data, path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a recbole-kgin checkpoint "
                              f"(no '{FORMAT}' marker)")
    try:
        version = int(data.get("version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint {path} has no valid format version "
                              f"({data.get('version')!r})") from None
    if version > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this "
                              f"package reads up to version {VERSION}")
    if DIGEST_KEY not in data:
        if version >= DIGEST_SINCE:
            raise CheckpointError(f"checkpoint {path} is damaged: format version {version} but no "
                                  "content digest in it")
        _notice(path, f"note: checkpoint {path} has format version {version}, without a content "
                "digest: its data cannot be verified (a run resumed from it saves a verified one)")
    return data


def verify(checkpoint, path):
    """Refuse (:class:`CheckpointError`) a checkpoint whose content differs from its digest."""
    stored = checkpoint.get(DIGEST_KEY)
    actual = content_digest(checkpoint)
    if stored != actual:
        shown = stored[:12] if isinstance(stored, str) else repr(stored)[:20]
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match the SHA-256 digest stored "
            f"in it ({shown} != {actual[:12]}); it is not used (restore it from a copy or retrain)")


_NOTICED = set()


def _notice(path, text):
    """Print ``text`` on stderr once per file and process (a run may read its checkpoint twice)."""
    key = str(Path(path).resolve())
    if key not in _NOTICED:
        _NOTICED.add(key)
        print(text, file=sys.stderr, flush=True)


def _from_recbole(path):
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({_summary(err)})") from None
    if not isinstance(raw, dict) or "state_dict" not in raw or "config" not in raw:
        raise CheckpointError(f"checkpoint {path} is neither a recbole-kgin nor a RecBole checkpoint")
    _notice(path, f"note: checkpoint {path} is a RecBole checkpoint, without a content digest: "
            "its data cannot be verified")
    config = raw["config"]
    overrides = dict(getattr(config, "external_config_dict", {}) or {})
    return {
        "format": FORMAT, "version": VERSION, "converted_from": "recbole",
        "model": config["model"], "dataset": config["dataset"],
        "config": plain(dict(getattr(config, "final_config_dict", {}) or {})),
        "config_overrides": plain(overrides),
        "dataset_fingerprint": None, "id_mappings": {},
        "state_dict": raw["state_dict"], "other_parameter": raw.get("other_parameter"),
        "best": {"epoch": raw.get("epoch"), "valid_score": plain(raw.get("best_valid_score")),
                 "valid_result": None},
        "training": None,
    }


def check_dataset(checkpoint, dataset, path):
    """Refuse a checkpoint written for other data than ``dataset`` (a training split)."""
    expected = checkpoint.get("dataset_fingerprint")
    if expected is None:
        return
    actual = dataset_fingerprint(dataset)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {path} was trained on other data than dataset "
            f"'{checkpoint['dataset']}' now holds (fingerprint {expected[:12]} != {actual[:12]}: "
            "re-converted files, another split or other filters)"
        )
