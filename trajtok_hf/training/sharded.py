"""Sharded training with FSDP2 (``torch.distributed.fsdp.fully_shard``) and sharded checkpoints without pickle.

Accelerate engages FSDP only on accelerators, so a CPU run (and any plain ``torchrun`` launch) uses these helpers
directly; on GPUs Accelerate's own FSDP2 plugin (``examples/accelerate_configs/fsdp2.yaml``) shards the same modules.

* :func:`init_distributed` joins the process group that ``torchrun`` describes in the environment (``gloo`` on CPU,
  ``nccl`` on CUDA) and returns a :class:`DistributedContext`; without ``torchrun`` it is a single process.
* :func:`shard_model` applies ``fully_shard`` to every block the model names in ``_no_split_modules`` (transformers'
  convention, the same classes Accelerate's transformer wrap policy picks: ``ViTLayer``, the Perceiver layers, the
  LLM's decoder layers), then to the root. Parameters become ``DTensor`` shards along dim 0; each block's parameters
  are all-gathered for its forward and backward and freed after; gradients are reduce-scattered (averaged over
  processes). PEFT models work unchanged: frozen and LoRA parameters share a unit, FSDP2 shards each parameter.
* :class:`ShardedCheckpointManager` saves the model and optimizer state with ``torch.distributed.checkpoint`` and its
  Hugging Face storage writer: every process writes its own shard as a safetensors file whose header records the
  shard's offsets, so no process gathers the full model and nothing is pickled (DCP's default ``.metadata`` file is a
  pickle and is never written). The loader (``HuggingFaceStorageReader``) rebuilds the layout from those headers, so a
  checkpoint saved by two processes resumes in one and the reverse, bit-exactly (tensors are copied, not recomputed).
  Everything else — optimizer hyper-parameters, scheduler, counters, each process's data-loader position and random
  states — is JSON (tensors among them in a safetensors file beside it). The folder is committed atomically like
  :class:`~trajtok_hf.training.CheckpointManager`'s, whose pointer, pruning and manifest checks it reuses.
* :func:`save_consolidated` writes the final weights as one ``save_pretrained`` folder (a PEFT model: its adapter).

Layout of a checkpoint::

    checkpoint_dir/step_000100/
      model/            shard-0000R-model-00001-of-00001.safetensors, one per saving process (tensor shards)
      optimizer/        the same for the optimizer state tensors (``state.<parameter>.<key>``)
      optimizer.json    parameter groups (hyper-parameters and parameter names) and non-tensor state
      scheduler.json    the LR scheduler's state
      process_N.json    per process: data-loader state and random states (+ process_N.safetensors for tensors)
      trainer_state.json  counters, world size, extra fields and the list of files (written last)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..file_utils import TMP_PREFIX, atomic_folder, commit_folder, fresh_folder
from .checkpoints import STATE_FILE, CheckpointManager, _listing, check_manifest
from .hooks import maybe_fault
from .loop import TrainState
from .serialization import load_state, read_json, read_state_json, save_state, to_json, write_json
from .state import matching_keys, process_rng_state, set_process_rng_state

logger = logging.getLogger(__name__)

SHARDED_CHECKPOINT_FORMAT = "trajtok_hf-fsdp-safetensors-json-1"
MODEL_DIR = "model"
OPTIMIZER_DIR = "optimizer"
OPTIMIZER_GROUPS_FILE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
PROCESS_STEM = "process_{}"
_STATE_PREFIX = "state."
# DCP warns that it "assumes the intent" of a single process when no process group exists: that is the intent here.
_SINGLE_PROCESS_WARNING = "torch.distributed is disabled, unavailable or uninitialized"


# --------------------------------------------------------------------------------------------------------------
# Process group


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, its ``local_rank`` and ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of ``value`` over processes (a detached copy; ``value`` itself in a single process)."""
        value = value.detach().clone()
        if self.distributed:
            dist.all_reduce(value)
        return value


def init_distributed(backend: str | None = None, device: str | None = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...), once.

    ``backend``: ``None`` picks ``nccl`` when CUDA is available and ``gloo`` otherwise. ``device``: ``None`` picks
    ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU. Without ``WORLD_SIZE`` in the environment (plain
    ``python``) no group is created: a single process, which every helper here also accepts.
    """
    if backend is not None and backend not in ("gloo", "nccl"):
        raise ValueError(f"`backend` must be None, 'gloo' or 'nccl', got {backend!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if device is None:
        device = f"cuda:{local_rank}" if use_cuda else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if "WORLD_SIZE" in os.environ and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


# --------------------------------------------------------------------------------------------------------------
# FSDP2


def block_class_names(model: nn.Module) -> set[str]:
    """The class names listed in ``_no_split_modules`` by ``model`` and every transformers model inside it."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard_model(
    model: nn.Module,
    *,
    block_classes: Iterable[str] | None = None,
    reshard_after_forward: bool = True,
    mp_policy=None,
    mesh=None,
) -> nn.Module:
    """Shard ``model`` in place with FSDP2: ``fully_shard`` on every module whose class name is in ``block_classes``
    (default: :func:`block_class_names`), innermost first, then on the root, which keeps the remaining parameters
    (embeddings, heads, norms; tied weights stay one parameter). Needs an initialised process group
    (:func:`init_distributed`; one process is a valid group of size 1). Returns ``model``.

    FSDP2 shards every parameter along its first dimension and refuses 0-dim ones; those (TrajViT2's
    ``logit_scale``) stay whole on every process, outside FSDP: :func:`reduce_replicated_gradients` averages their
    gradients after each backward, which FSDP does not do for them."""
    from torch.distributed.fsdp import fully_shard

    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(block_classes, str) or (
        block_classes is not None and not all(isinstance(name, str) for name in block_classes)
    ):
        raise TypeError(f"`block_classes` must be an iterable of class names (str), got {block_classes!r}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("shard_model needs a process group: launch with torchrun and call init_distributed() first")
    names = set(block_classes) if block_classes is not None else block_class_names(model)
    kwargs = {"reshard_after_forward": reshard_after_forward, "mesh": mesh}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    # Innermost blocks first: fully_shard on a parent then manages every parameter not already in a nested unit.
    blocks = [module for module in model.modules() if module is not model and type(module).__name__ in names][::-1]
    if not blocks:
        logger.warning("no module of %s in the model: FSDP shards it as one unit", sorted(names))
    kwargs["ignored_params"] = set(replicated_parameters(model))
    for module in blocks:
        fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    return model


def replicated_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`shard_model` leaves whole on every process (0-dim ones)."""
    return [param for param in model.parameters() if param.ndim == 0]


def reduce_replicated_gradients(model: nn.Module, divide_by: float = 1.0) -> None:
    """Average the gradients of :func:`replicated_parameters` over processes (then divide by ``divide_by``); call
    after ``backward`` and before clipping and the optimizer step. A no-op in a single process.

    ``divide_by``: a loss that every process computes over the whole global batch (the gathered contrastive loss)
    gives such a parameter, on every process, the gradient of the whole global-batch loss; when each process
    back-propagates ``world_size ×`` its loss (so that FSDP's average over the sharded parameters' partial gradients
    is their sum), pass ``divide_by=world_size`` to undo that factor for these parameters."""
    if isinstance(divide_by, bool) or not isinstance(divide_by, (int, float)) or not divide_by > 0:
        raise ValueError(f"`divide_by` must be a number > 0, got {divide_by!r}")
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world_size = dist.get_world_size()
    for param in replicated_parameters(model):
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world_size * divide_by


def _is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


# --------------------------------------------------------------------------------------------------------------
# State dicts: tensors through DCP's Hugging Face storage, the rest as JSON


def _dcp_save(state: dict[str, torch.Tensor], folder: Path) -> None:
    import torch.distributed.checkpoint as dcp

    distributed = dist.is_available() and dist.is_initialized()
    writer = dcp.HuggingFaceStorageWriter(path=str(folder), save_distributed=distributed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING)
        dcp.save(state, storage_writer=writer)


def _dcp_load(state: dict[str, torch.Tensor], folder: Path, what: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    files = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise ValueError(f"{folder}: no safetensors files; the checkpoint's {what} is missing")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING)
            dcp.load(state, storage_reader=dcp.HuggingFaceStorageReader(path=str(folder)))
    except (Exception, CheckpointException) as error:  # CheckpointException (a BaseException) gathers every process's
        raise ValueError(f"{folder}: cannot load the {what} into this run ({type(error).__name__}: {error})") from None


def _model_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state dict with each tied tensor once (safetensors stores a storage once), and the other names of
    the tied tensors (``alias → stored name``)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in get_model_state_dict(model).items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        key = (local.data_ptr(), local.dtype, tuple(tensor.shape), tuple(local.stride()))
        if local.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = tensor
    return unique, aliases


def _split_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``get_optimizer_state_dict`` output → (tensors named ``state.<param>.<key>``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for name, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_STATE_PREFIX}{name}.{key}"] = value
            else:
                other.setdefault(name, {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": other}


def _optimizer_state(model: nn.Module, optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer)


def save_model_and_optimizer(folder: str | os.PathLike, model: nn.Module, optimizer=None) -> None:
    """Write ``model`` (and ``optimizer``) into ``folder/model`` (``folder/optimizer`` + ``optimizer.json``); call on
    every process. Works for FSDP2-sharded and plain models alike."""
    folder = Path(folder)
    _dcp_save(_model_state(model)[0], folder / MODEL_DIR)
    if optimizer is not None:
        tensors, rest = _split_optimizer_state(_optimizer_state(model, optimizer))
        _dcp_save(tensors, folder / OPTIMIZER_DIR)
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            write_json(folder / OPTIMIZER_GROUPS_FILE, to_json(rest, None, "optimizer"))


def load_model_and_optimizer(folder: str | os.PathLike, model: nn.Module, optimizer=None) -> None:
    """Load what :func:`save_model_and_optimizer` wrote into ``model`` (and ``optimizer``), whatever the number of
    processes that saved it; call on every process. ``ValueError`` naming the folder when a tensor is missing or does
    not fit, or the parameter groups differ from this run's."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    folder = Path(folder)
    state, aliases = _model_state(model)
    _dcp_load(state, folder / MODEL_DIR, "model state")
    set_model_state_dict(model, {**state, **{alias: state[name] for alias, name in aliases.items()}})
    if optimizer is None:
        return
    live = _optimizer_state(model, optimizer)  # initialises the optimizer's state tensors (zeros) when still empty
    tensors, rest = _split_optimizer_state(live)
    _dcp_load(tensors, folder / OPTIMIZER_DIR, "optimizer state")
    path = folder / OPTIMIZER_GROUPS_FILE
    saved = read_state_json(path)
    if not isinstance(saved, dict) or set(saved) != {"param_groups", "state"}:
        raise ValueError(f"{path}: expected the keys 'param_groups' and 'state'")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(rest["param_groups"]):
        raise ValueError(f"{path}: expected {len(rest['param_groups'])} parameter groups")
    for i, (group, current) in enumerate(zip(groups, rest["param_groups"], strict=True)):
        matching_keys(group, current, f"{path}: param_groups[{i}]")
        if group["params"] != current["params"]:
            raise ValueError(f"{path}: param_groups[{i}] holds other parameters than this run's optimizer")
    for name, entry in live["state"].items():
        for key in list(entry):
            if isinstance(entry[key], torch.Tensor):
                entry[key] = tensors[f"{_STATE_PREFIX}{name}.{key}"]
            elif key in saved["state"].get(name, {}):
                entry[key] = saved["state"][name][key]
    set_optimizer_state_dict(model, optimizer, {"state": live["state"], "param_groups": groups})


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


class ShardedCheckpointManager(CheckpointManager):
    """Atomic sharded checkpoints under ``checkpoint_dir`` (layout in the module docstring), for FSDP2 runs launched
    with ``torchrun`` (and single processes). Every process calls :meth:`save` and :meth:`load`.

    Saving writes into ``.tmp-step_NNNNNN``; once every process has written its shards, the main process writes
    ``trainer_state.json`` (the counters, the world size and the list of files), renames the folder into place and
    replaces the ``latest`` pointer, each step atomic: a process killed at any time leaves ``latest`` naming the
    previous complete checkpoint, which loads. Loading refuses a folder holding a file its save did not write (a
    planted pickle is never opened). The data-loader position and random states are per process: a resume with the
    same number of processes restores them exactly. With another number, model, optimizer and scheduler are resharded
    exactly; process ``r`` takes the random states of saved process ``r mod N`` (processes seeded alike, as
    ``torchrun`` scripts seed them, stay alike: TrajTok's Matryoshka level drawn per step stays the same on every
    process and the same as in the saved run) and starts its data stream afresh (with a warning), since the
    per-process stream positions of the old run do not map onto the new processes.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, context: DistributedContext, total_limit: int | None = None):
        if not isinstance(context, DistributedContext):
            raise TypeError(f"`context` must be a DistributedContext, got {type(context).__name__}")
        super().__init__(checkpoint_dir, total_limit=total_limit, is_main_process=context.is_main_process)
        self.context = context

    def save(
        self,
        state: TrainState,
        model: nn.Module,
        optimizer,
        scheduler=None,
        *,
        data_state: Any = None,
        artifacts=(),
        extra: dict | None = None,
    ) -> Path:
        """Save checkpoint ``step_{state.step}``. ``data_state``: this process's data-loader ``state_dict()``
        (JSON-able, tensors allowed); ``artifacts``: objects with ``save_pretrained`` (config, processor) written by
        the main process; ``extra``: JSON-able fields for ``trainer_state.json``."""
        ctx = self.context
        name = self.name_for(state.step)
        final, tmp = self.dir / name, self.dir / f"{TMP_PREFIX}{name}"
        if ctx.is_main_process:
            fresh_folder(tmp)
        ctx.barrier()
        save_model_and_optimizer(tmp, model, optimizer)
        save_state(tmp, PROCESS_STEM.format(ctx.rank), {"data": data_state, "rng": process_rng_state(ctx.device.type)})
        ctx.barrier()
        if ctx.is_main_process:
            if scheduler is not None:
                write_json(tmp / SCHEDULER_FILE, to_json(scheduler.state_dict(), None, "scheduler"))
            for artifact in artifacts:
                artifact.save_pretrained(tmp)
            maybe_fault("before_commit", state.step)
            payload = {
                **dataclasses.asdict(state),
                **(extra or {}),
                "world_size": ctx.world_size,
                "format": SHARDED_CHECKPOINT_FORMAT,
                "files": _listing(tmp),
            }
            write_json(tmp / STATE_FILE, payload)
            commit_folder(tmp, final)
            maybe_fault("before_pointer", state.step)
            self._point_latest_to(name)
            self._prune(keep=final)
        ctx.barrier()
        return final

    def load(self, path: str | os.PathLike, model: nn.Module, optimizer, scheduler=None) -> tuple[TrainState, Any]:
        """Restore checkpoint ``path`` into ``model``, ``optimizer`` and ``scheduler`` and this process's random
        states; return the counters and this process's saved data-loader state (``None`` when the checkpoint was
        saved by another number of processes, see the class docstring)."""
        ctx = self.context
        path = Path(path)
        payload = read_json(path / STATE_FILE)
        state = check_manifest(
            path, payload, SHARDED_CHECKPOINT_FORMAT, required=(OPTIMIZER_GROUPS_FILE, f"{PROCESS_STEM.format(0)}.json")
        )
        load_model_and_optimizer(path, model, optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(
                matching_keys(
                    read_state_json(path / SCHEDULER_FILE), scheduler.state_dict(), str(path / SCHEDULER_FILE)
                )
            )
        saved_world = payload.get("world_size")
        if isinstance(saved_world, bool) or not isinstance(saved_world, int) or saved_world < 1:
            raise ValueError(f"{path / STATE_FILE}: 'world_size' must be an int >= 1, got {saved_world!r}")
        same_world = saved_world == ctx.world_size
        stem = PROCESS_STEM.format(ctx.rank if same_world else ctx.rank % saved_world)
        if not (path / f"{stem}.json").is_file():
            raise ValueError(f"{path / (stem + '.json')}: missing from the checkpoint")
        process = load_state(path, stem)
        if not isinstance(process, dict) or set(process) != {"data", "rng"}:
            raise ValueError(f"{path / (stem + '.json')}: expected the keys 'data' and 'rng'")
        try:
            set_process_rng_state(process["rng"], ctx.device.type)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path / (stem + '.json')}: malformed random state ({error})") from None
        if not same_world:
            logger.warning(
                "%s was saved by %d processes, this run has %d: model, optimizer and scheduler are restored exactly, "
                "process %d takes the random states of saved process %s and starts its data stream afresh",
                path,
                saved_world,
                ctx.world_size,
                ctx.rank,
                stem.split("_")[-1],
            )
            return state, None
        return state, process["data"]


# --------------------------------------------------------------------------------------------------------------
# Final weights


def _plain_class(model: nn.Module) -> type:
    """The model's own class (FSDP2 swaps in a subclass named ``FSDP<Class>``)."""
    from torch.distributed.fsdp import FSDPModule

    for cls in type(model).__mro__:
        if not issubclass(cls, FSDPModule):
            return cls
    raise TypeError(f"cannot find the unsharded class of {type(model).__name__}")


def save_consolidated(model: nn.Module, output_dir: str | os.PathLike, context: DistributedContext, artifacts=()):
    """Gather the full weights (a collective: call on every process) and write them, on the main process, as one
    ``save_pretrained`` folder, atomically; ``artifacts`` (config-less objects with ``save_pretrained``, e.g. the
    processor) go into the same folder. A PEFT model writes its adapter (``adapter_model.safetensors``). A sharded
    transformers model is rebuilt unsharded (on the meta device, then assigned the gathered tensors) so that
    ``config.json`` names the model's own class."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not isinstance(context, DistributedContext):
        raise TypeError(f"`context` must be a DistributedContext, got {type(context).__name__}")
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if context.is_main_process:
        with atomic_folder(output_dir) as folder:
            target = model
            if _is_sharded(model) and not hasattr(model, "peft_config"):
                cls = _plain_class(model)
                with torch.device("meta"):
                    target = cls(model.config)
                target.load_state_dict(full, assign=True)
                if hasattr(target, "tie_weights"):
                    target.tie_weights()
                target.save_pretrained(folder)
            else:
                target.save_pretrained(folder, state_dict=full)
            for artifact in artifacts:
                artifact.save_pretrained(folder)
    context.barrier()


__all__ = [
    "MODEL_DIR",
    "OPTIMIZER_DIR",
    "SHARDED_CHECKPOINT_FORMAT",
    "DistributedContext",
    "ShardedCheckpointManager",
    "block_class_names",
    "init_distributed",
    "load_model_and_optimizer",
    "reduce_replicated_gradients",
    "replicated_parameters",
    "save_consolidated",
    "save_model_and_optimizer",
    "shard_model",
]
