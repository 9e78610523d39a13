"""One training loop for Vox-UDA and its baselines; each method is a plug-in (training/methods/).

The loop is generic (networks, optimisers, EMA teacher, AMP, checkpoints, selection); what a
step feeds the student and minimises is the method's (`voxuda train --help` lists them, the
README's method table says what each computes). Decisions the loop makes for every method:

- One student forward per step over the concatenated batch (e.g. [x_s, x_s', x_t] for vox-uda),
  so one batch norm sees all of it. Which samples give the batch statistics is the method's
  (``Method.statistics_samples``): vox-uda with ``--bn-statistics source`` (what the default
  recipe's ``auto`` picks where the source spans the target's spectra) normalises the target
  with the source views' statistics; ``mixed`` (the paper recipe) with the whole mix.
- The student trains in train mode. The teacher (methods with one) runs in eval mode, so its
  labels come from the function `voxuda predict` later applies; it starts as a copy of the
  student when the method says (``teacher_ready``: after the burn-in in the default recipe) and
  is then the exponential moving average of the student's parameters and running statistics
  (--ema). The paper recipe warms the decay up as Mean Teacher does (min(--ema, 1 - 1/(k + 1))
  from the teacher's start, ``--ema-warmup``); the default recipe does not.
- The discriminator (methods with one) sees f_v6 of every sample behind gradient reversal, whose
  weight follows the run's schedule (training/schedule.py: the burn-in, then the DANN ramp up to
  --reversal-scale), with its own optimiser where --dis-lr is set.
- Schedules are functions of the fraction of the horizon (--ramp-epochs, or the --epochs the run
  started with, kept across --resume), so a resumed run follows the one that never stopped.
- The augmentation (random flips) applies to the labelled batch only; the target is sampled with
  replacement, each step, from its own seeded stream.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from voxuda_cli import signals
from voxuda_cli.config import dump_toml, settings_to_dict
from voxuda_cli.device import resolve_device, seed_everything
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.atomic import atomic_copy, atomic_write_text
from voxuda_cli.io.lock import folder_lock
from voxuda_cli.io.outputs import ensure_folder, no_empty_folders_left
from voxuda_cli.models.discriminator import DomainDiscriminator, reverse_gradient
from voxuda_cli.models.serialization import ModelInfo, save_model
from voxuda_cli.models.speed import autocast, autocast_dtype, prepare_network
from voxuda_cli.models.voxresnet import VoxResNet, VoxResNetConfig
from voxuda_cli.training import checkpoint as ckpt
from voxuda_cli.training import schedule, selection
from voxuda_cli.training.data import Batch, EpochBatches, EpochPlan, TrainingData, VolumeSet, load_training_data
from voxuda_cli.training.distributed import DistributedContext
from voxuda_cli.training.guards import AdaptationGuard
from voxuda_cli.training.methods import Method, Position, StepOutputs, get_method
from voxuda_cli.training.settings import TrainSettings

log = logging.getLogger("voxuda")

CURVE_GROUPS = {
    "losses": ("loss", "seg", "con", "dis", "pl"),
    "pseudo-label coverage": ("pl_coverage", "pl_coverage_fg", "agreement"),
    # A healthy teacher's foreground stays near the student's and of the order of the source's.
    "foreground fraction": ("teacher_foreground", "student_foreground_target", "pl_foreground", "source_foreground"),
    "schedule": ("reversal_weight", "pl_weight"),
    "validation": ("val_dice", "val_iou", "val_dice_student"),
    "learning rate": ("lr",),
    "label-free selection": selection.FIGURES,
    "guards": ("dis_running", "dis_guard_on", "pl_guard_on"),
}


class TrainProgress(Protocol):
    """What the loop reports as it goes (only the process of rank 0 reports)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def advance(self, running: Mapping[str, float]) -> None: ...

    def end_epoch(self, record: Mapping[str, Any]) -> None: ...


class Segmenter(nn.Module):
    """Student and (for vox-uda, dann) the domain discriminator behind a gradient-reversal layer.

    One module with one forward, so DistributedDataParallel sees and synchronises every parameter.
    """

    def __init__(self, student: VoxResNet, discriminator: DomainDiscriminator | None) -> None:
        super().__init__()
        self.student = student
        self.discriminator = discriminator

    def forward(
        self, x: torch.Tensor, reversal_weight: float = 0.0
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        output = self.student.forward_features(x)
        domain = None
        if self.discriminator is not None:
            domain = self.discriminator(reverse_gradient(output.features[-1], reversal_weight))
        return output.logits, output.features, domain


class Trainer:
    """Networks, optimiser, EMA teacher, AMP and checkpoint state; one step of the run's method.

    Generic: what a step computes is ``self.method`` (a training/methods/ plug-in).
    """

    def __init__(
        self, settings: TrainSettings, device: torch.device, context: DistributedContext | None = None
    ) -> None:
        self.settings = settings
        self.device = device
        self.context = context or DistributedContext()
        self.method: Method = get_method(settings.method)(settings)
        self.guard = AdaptationGuard(float(settings.dis_guard or 0.0), float(settings.pl_guard or 0.0))
        seed_everything(settings.seed)
        config = VoxResNetConfig(width=settings.width)
        student = VoxResNet(config)
        discriminator = DomainDiscriminator(2 * settings.width) if self.method.has_discriminator else None
        self.teacher: VoxResNet | None = None
        if self.method.has_teacher:
            self.teacher = copy.deepcopy(student).to(device).eval()
            self.teacher.requires_grad_(False)
        # ``segmenter`` is the module itself; ``wrapped`` is what a step calls: the same module, or
        # its DistributedDataParallel wrapper under torchrun (which synchronises the gradients).
        self.wrapped = self.context.wrap(Segmenter(student, discriminator).to(device), device)
        self.segmenter: Segmenter = getattr(self.wrapped, "module", self.wrapped)  # type: ignore[arg-type]  # a Segmenter either way
        self.segmenter.train()
        # before the optimiser and the EMA pairs take the parameters (the layout replaces their data)
        for network in (self.segmenter, self.teacher):
            if network is not None:
                prepare_network(network, device, settings.compile)
        # The discriminator may have its own optimiser (--dis-lr): with the segmenter's Adam and lr it
        # wins within a few steps and the reversed gradient then swamps L_seg (issue 11).
        self.dis_optimizer: torch.optim.Optimizer | None = None
        parameters = list(self.segmenter.student.parameters())
        if discriminator is not None and settings.dis_lr:
            self.dis_optimizer = torch.optim.Adam(discriminator.parameters(), lr=settings.dis_lr)
        elif discriminator is not None:
            parameters += list(discriminator.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=settings.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma
        )
        self.amp_dtype = autocast_dtype(settings.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._ema_pairs = self._teacher_pairs() if self.teacher is not None else None
        self.steps_done = 0
        self.teacher_started_at: int | None = None  # the step at which teacher := student
        self.method.attach(self)  # the method's own networks (PDAM's translator, MAPSeg's decoder)

    @property
    def student(self) -> VoxResNet:
        return self.segmenter.student

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.amp_dtype, self.device)

    def _teacher_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(teacher floats, student floats, teacher counters, student counters), matched by name."""
        student = {**dict(self.student.named_parameters()), **dict(self.student.named_buffers())}
        floats_t, floats_s, counters_t, counters_s = [], [], [], []
        assert self.teacher is not None
        for name, tensor in [*self.teacher.named_parameters(), *self.teacher.named_buffers()]:
            if tensor.is_floating_point():
                floats_t.append(tensor)
                floats_s.append(student[name])
            else:
                counters_t.append(tensor)
                counters_s.append(student[name])
        return floats_t, floats_s, counters_t, counters_s

    @torch.no_grad()
    def update_teacher(self) -> None:
        """teacher <- decay * teacher + (1 - decay) * student (parameters and BN running statistics)."""
        if self._ema_pairs is None or self.teacher_started_at is None:
            return
        decay = self.settings.ema
        if self.settings.ema_warmup:  # Mean Teacher's warm-up, counted from the teacher's start
            decay = min(decay, 1.0 - 1.0 / (self.steps_done - self.teacher_started_at + 1))
        floats_t, floats_s, counters_t, counters_s = self._ema_pairs
        torch._foreach_lerp_(floats_t, [s.detach() for s in floats_s], 1.0 - decay)
        for teacher_counter, student_counter in zip(counters_t, counters_s):
            teacher_counter.copy_(student_counter)

    @torch.no_grad()
    def start_teacher(self) -> None:
        """teacher := student (parameters and buffers), from this step on its EMA (Unbiased Teacher, MAPSeg)."""
        if self.teacher is not None:
            self.teacher.load_state_dict(self.student.state_dict())
            self.teacher_started_at = self.steps_done

    def step(self, batch: Batch, progress: float, epoch_position: float | None = None) -> dict[str, float]:
        """One optimisation step; returns the loss terms and the method's figures as floats.

        ``progress`` (fraction of the schedule's horizon) drives the method's schedules (burn-in,
        reversal ramp, L_pl ramp); ``epoch_position`` (epochs done, fractional) the L_pl warm-up (``pl_warmup``).
        """
        method, position = self.method, Position(epoch_position, progress)
        if self.teacher is not None and self.teacher_started_at is None and method.teacher_ready(position):
            self.start_teacher()
        method.before_step(self, position)
        method.prepare(self, batch, position)
        weights = method.weights(position)
        # The teacher keeps running while a guard pauses L_pl: its labels show when it recovers.
        wants_teacher = self.teacher is not None and method.wants_teacher(position, weights)
        weights = self.guard.weights(weights)
        reversal = self.guard.reversal(method.reversal_weight(position))
        with self._autocast(), self.student.statistics_from(method.statistics_samples(batch)):
            logits, features, domain = self.wrapped(method.inputs(batch), reversal)
            teacher_logits = None
            if wants_teacher:
                teacher_logits = self.teacher_log_probabilities(method.teacher_views(batch))
        outputs = StepOutputs(logits, features, domain, teacher_logits, position)
        losses = method.losses(outputs, batch)
        total = torch.stack([weights[k] * v for k, v in losses.items()]).sum()
        self._optimise(total)
        self.update_teacher()
        self.steps_done += 1
        figures = dict(outputs.figures)
        figures["loss"] = float(total.detach())
        figures.update({k: float(v.detach()) for k, v in losses.items()})
        if method.has_discriminator:
            figures["reversal_weight"] = reversal
        if "pl" in weights and self.teacher is not None:
            figures["pl_weight"] = weights["pl"]
        if method.has_discriminator or self.teacher is not None:
            self.guard.observe(figures, self.steps_done)
            figures.update(self.guard.figures())
        return figures

    def _optimise(self, total: torch.Tensor) -> None:
        optimizers = [self.optimizer, *([self.dis_optimizer] if self.dis_optimizer is not None else [])]
        optimizers += self.method.optimizers()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()

    @torch.no_grad()
    def teacher_log_probabilities(self, views: list[torch.Tensor]) -> torch.Tensor:
        """log of the teacher's class probabilities, averaged over ``views`` (one view: its log-softmax)."""
        assert self.teacher is not None
        probabilities = [torch.softmax(self.teacher(view).float(), dim=1) for view in views]
        mean = probabilities[0] if len(probabilities) == 1 else torch.stack(probabilities).mean(0)
        return mean.clamp_min(1e-12).log()

    @torch.no_grad()
    def evaluate(self, validation: VolumeSet, batch_size: int) -> dict[str, float]:
        """Validation Dice/IoU (means over samples) of the weights predict uses, and of the student."""
        from voxuda_cli.metrics import score_masks

        if validation.masks is None:
            return {}
        models = {"": self.teacher if self.teacher is not None else self.student}
        if self.teacher is not None:
            models["_student"] = self.student
        results: dict[str, float] = {}
        self.segmenter.eval()
        try:
            for suffix, model in models.items():
                predictions = []
                for start in range(0, len(validation), batch_size):
                    images = validation.images[start : start + batch_size].unsqueeze(1).to(self.device)
                    with self._autocast():
                        predictions.append(model(images).argmax(dim=1).to(torch.uint8).cpu())
                report = score_masks(
                    validation.names, torch.cat(predictions).numpy(), validation.masks.numpy(), validation.classes
                )
                results[f"val_dice{suffix}"] = report["mean"]["dice"]
                results[f"val_iou{suffix}"] = report["mean"]["iou"]
        finally:
            self.segmenter.train()
        return results

    @torch.no_grad()
    def probe(self, probe: selection.CandidateProbe, batch_size: int) -> dict[str, float]:
        """The label-free figures (selection.FIGURES) of the student, the weights predict uses by default."""
        model = self.student
        self.segmenter.eval()
        try:
            with self._autocast():
                return probe.figures(lambda images: model(images.to(self.device)), batch_size)
        finally:
            self.segmenter.train()

    def state_dict(self) -> dict[str, Any]:
        discriminator = self.segmenter.discriminator
        return {
            "student": self.student.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "discriminator": None if discriminator is None else discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "steps_done": self.steps_done,
            "teacher_started_at": self.teacher_started_at,
            "dis_optimizer": None if self.dis_optimizer is None else self.dis_optimizer.state_dict(),
            "method": self.method.state_dict(),
            "guard": self.guard.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.segmenter.discriminator is not None:
            self.segmenter.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_done = int(state["steps_done"])
        # A checkpoint of before the burn-in existed had its teacher running from the first step.
        self.teacher_started_at = state.get("teacher_started_at", 0 if self.teacher is not None else None)
        if self.dis_optimizer is not None:
            self.dis_optimizer.load_state_dict(state["dis_optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(dict(state.get("method") or {}))
        self.guard.load_state_dict(dict(state.get("guard") or {}))


def train(
    settings: TrainSettings,
    run_dir: Path | str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: TrainProgress | None = None,
) -> dict[str, Any]:
    """Train ``settings.method`` into ``run_dir``; returns the run summary (what ``--json`` prints).

    Inputs, the run directory and a checkpoint to resume are all checked before anything is
    written: a bad input raises VoxudaInputError and leaves ``run_dir`` as it was. Under torchrun
    every process calls this; rank 0 writes the files and reports progress.
    """
    run_dir = Path(run_dir).absolute()
    context = DistributedContext.from_env()
    device = context.device_for(resolve_device(settings.device))
    context.start(device)
    created = not run_dir.exists()
    # a run refused (or stopped) before it wrote anything leaves no folder; one process removes it
    leaves_none = no_empty_folders_left(run_dir) if context.is_main else contextlib.nullcontext()
    try:
        with leaves_none, contextlib.ExitStack() as held:
            prepared: tuple[TrainingData, dict[str, Any] | None] | None = None
            error: BaseException | None = None
            try:
                if context.is_main and not (resume and created):  # one writer per run directory
                    held.enter_context(folder_lock(run_dir, f"-o {run_dir}"))
                prepared = _prepare(settings, run_dir, resume, overwrite, device, context)
            except Exception as exc:  # every process must hear of any process's failure
                error = exc
            context.agree(error)
            assert prepared is not None
            data, state = prepared
            progress = progress if context.is_main else None
            return _run(settings, run_dir, data, state, overwrite, device, context, progress)
    finally:
        context.stop()


def _prepare(
    settings: TrainSettings,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    device: torch.device,
    context: DistributedContext,
) -> tuple[TrainingData, dict[str, Any] | None]:
    """Every check that can fail, before anything is written."""
    if resume and overwrite:
        raise VoxudaInputError("--resume and --overwrite: choose one (continue the run, or start it again)")
    if settings.batch_size % context.world_size:
        raise VoxudaInputError(
            f"--batch-size {settings.batch_size}: must be a multiple of the {context.world_size} processes"
        )
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    state = ckpt.load_checkpoint(run_dir, settings) if resume else None
    if not resume:
        ckpt.check_fresh_run_dir(run_dir, overwrite)
    data = load_training_data(settings, device)
    for warning in data.warnings:
        log.warning(warning)
    return data, state


@dataclass
class EpochState:
    """How far a run is inside ``epoch``: ``step`` steps done and the running sums of their figures.

    A checkpoint signal saves it (with the trainer's state and every RNG state); --resume continues
    from it. The batches themselves need no state: each comes from (seed, epoch, step, rank).
    """

    epoch: int
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "sums": dict(self.sums)}


def _run(
    settings: TrainSettings,
    run_dir: Path,
    data: TrainingData,
    state: dict[str, Any] | None,
    overwrite: bool,
    device: torch.device,
    context: DistributedContext,
    progress: TrainProgress | None,
) -> dict[str, Any]:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with signals.stop_request(settings.signal_numbers()) as stop:
        # Armed before the trainer (whose DDP set-up is a collective): by the time rank 0 writes
        # config.toml every process answers a checkpoint signal with a checkpoint.
        stop.armed = True
        trainer = Trainer(settings, device, context)
        start_epoch, history, ramp_epochs, inside = _restore(trainer, settings, state, run_dir)
        if context.is_main:
            if state is None and overwrite:
                ckpt.remove_run_files(run_dir)
            ckpt.remove_stale_temporaries(run_dir)
            ensure_folder(run_dir)
            atomic_write_text(run_dir / ckpt.CONFIG, dump_toml(settings_to_dict(settings)))
        per_process_batch = settings.batch_size // context.world_size
        probe = _candidate_probe(trainer, data, run_dir) if context.is_main else None
        started = time.perf_counter()
        for epoch in range(start_epoch, settings.epochs):
            position = inside if inside is not None and inside.epoch == epoch else EpochState(epoch)
            record = _train_epoch(
                trainer, data, settings, position, ramp_epochs, per_process_batch, context, progress, stop
            )
            if record is None:  # a checkpoint signal inside the epoch
                _save_checkpoint(run_dir, trainer, settings, history, ramp_epochs, context, position)
                raise _stopped(stop, run_dir, f"in epoch {epoch + 1} after step {position.step}")
            if context.is_main:
                if data.validation is not None:
                    record.update(trainer.evaluate(data.validation, per_process_batch))
                candidate = probe is not None and schedule.adapting(settings, (epoch + 1) / ramp_epochs)
                if candidate and probe is not None:
                    record.update(trainer.probe(probe, per_process_batch))
                history.append(record)
            _save_checkpoint(run_dir, trainer, settings, history, ramp_epochs, context)
            if context.is_main:
                _write_outputs(run_dir, trainer, settings, data, history)
                if candidate:
                    _keep_candidate(run_dir, epoch + 1)
                if progress is not None:
                    progress.end_epoch(record)
            context.barrier()
            if context.any(stop.requested, device) and epoch + 1 < settings.epochs:
                raise _stopped(stop, run_dir, f"after epoch {epoch + 1}")
    if context.is_main and start_epoch >= settings.epochs and not (run_dir / ckpt.MODEL).is_file():
        _write_outputs(run_dir, trainer, settings, data, history)
    if context.is_main and start_epoch < settings.epochs:
        _apply_selection(run_dir, settings, history)
    seconds = time.perf_counter() - started
    summary = _summary(settings, run_dir, data, history, start_epoch, seconds, device, context)
    return {**summary, "guards": trainer.guard.summary() if trainer.method.has_discriminator else None}


def _candidate_probe(trainer: Trainer, data: TrainingData, run_dir: Path) -> selection.CandidateProbe | None:
    """The target probe of label-free checkpoint selection (methods that see the target)."""
    if not trainer.method.uses_target or data.target is None or data.labelled.masks is None:
        return None
    source_foreground = float(data.labelled.masks.float().mean())
    reference = run_dir / selection.CANDIDATES / "reference_masks.pt"
    return selection.CandidateProbe(data.target.images, source_foreground, reference)


def _keep_candidate(run_dir: Path, epoch: int) -> None:
    """Copy this epoch's model.pt into candidates/."""
    atomic_copy(run_dir / ckpt.MODEL, run_dir / selection.candidate_name(epoch))


def _apply_selection(run_dir: Path, settings: TrainSettings, history: list[dict[str, Any]]) -> None:
    """Make the chosen candidate model.pt (the final epoch's weights stay as model_last.pt); log why."""
    chosen = selection.choose(history, settings.select)
    if chosen is None:
        return
    if chosen["epoch"] != chosen["final_epoch"]:
        atomic_copy(run_dir / ckpt.MODEL, run_dir / selection.LAST_MODEL)
        atomic_copy(run_dir / selection.candidate_name(chosen["epoch"]), run_dir / ckpt.MODEL)
        log.warning(
            "model.pt holds epoch %d, not the final epoch %d: %s (the final weights are in %s)",
            chosen["epoch"],
            chosen["final_epoch"],
            chosen["why"],
            selection.LAST_MODEL,
        )
    else:  # a stale model_last.pt of an earlier choice (before a --resume with more epochs) would mislead
        (run_dir / selection.LAST_MODEL).unlink(missing_ok=True)
        log.info("model.pt holds the final epoch %d: %s", chosen["epoch"], chosen["why"])
    atomic_write_text(run_dir / selection.CHOICE, json.dumps(chosen, indent=2) + "\n")


def _restore(
    trainer: Trainer, settings: TrainSettings, state: dict[str, Any] | None, run_dir: Path
) -> tuple[int, list[dict[str, Any]], int, EpochState | None]:
    """(epochs done, metrics so far, ramp horizon, position inside the next epoch) of a fresh or resumed run."""
    if state is None:
        return 0, [], settings.ramp_epochs or settings.epochs, None
    try:
        trainer.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:  # a checkpoint of another version of voxuda
        raise VoxudaInputError(
            f"--resume {run_dir / ckpt.CHECKPOINT}: checkpoint does not fit this version of voxuda "
            f"({type(exc).__name__}: {str(exc)[:200]}); start again with --overwrite"
        ) from exc
    ckpt.restore_rng_states(state["rng"])
    saved = state.get("position")
    inside = None if not saved else EpochState(int(saved["epoch"]), int(saved["step"]), dict(saved["sums"]))
    return int(state["epoch"]), list(state["history"]), int(state["ramp_epochs"]), inside


def _save_checkpoint(
    run_dir: Path,
    trainer: Trainer,
    settings: TrainSettings,
    history: list[dict[str, Any]],
    ramp_epochs: int,
    context: DistributedContext,
    position: EpochState | None = None,
) -> None:
    """checkpoint.pt at an epoch's end, or (``position``) inside an epoch; rank 0 writes, all wait."""
    if context.is_main:
        ckpt.save_checkpoint(
            run_dir / ckpt.CHECKPOINT,
            {
                **trainer.state_dict(),
                "epoch": len(history),
                "position": None if position is None else position.to_dict(),
                "history": history,
                "ramp_epochs": ramp_epochs,
                "settings": settings_to_dict(settings),
                "rng": ckpt.rng_states(),
            },
        )
    if position is not None:
        context.barrier()


def _stopped(stop: signals.StopRequest, run_dir: Path, where: str) -> signals.Stopped:
    signum = stop.signum or signal.SIGTERM  # another process of the launch got the signal
    name = signal.Signals(signum).name
    return signals.Stopped(
        signum,
        f"stopped by {name} {where}; checkpoint written ({run_dir / ckpt.CHECKPOINT}); "
        f"continue with: voxuda train -o {run_dir} --resume",
    )


def _train_epoch(
    trainer: Trainer,
    data: TrainingData,
    settings: TrainSettings,
    position: EpochState,
    ramp_epochs: int,
    batch_size: int,
    context: DistributedContext,
    progress: TrainProgress | None,
    stop: signals.StopRequest,
) -> dict[str, Any] | None:
    """Train the rest of ``position.epoch``; its record, or None if a checkpoint signal stopped it (then
    ``position`` says where)."""
    epoch = position.epoch
    plan = EpochPlan.build(len(data.labelled), batch_size, settings.seed, epoch, context.rank, context.world_size)
    batches = EpochBatches(data, settings, plan, epoch, context.rank)
    steps = range(position.step, len(batches))
    if settings.workers > 0:
        loader: Any = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=steps,
            num_workers=settings.workers,
            pin_memory=trainer.device.type == "cuda",
        )
    else:
        loader = (batches[step] for step in steps)
    lr = trainer.optimizer.param_groups[0]["lr"]
    if progress is not None:
        progress.start_epoch(epoch + 1, settings.epochs, plan.steps)
    sums = position.sums
    started = time.perf_counter()
    for step, batch in zip(steps, loader):
        if context.any(stop.requested, trainer.device):
            return None
        at = epoch + step / plan.steps
        figures = trainer.step(batch.to(trainer.device, non_blocking=True), at / ramp_epochs, at)
        for key, value in figures.items():
            sums[key] = sums.get(key, 0.0) + value
        position.step = step + 1
        if progress is not None:
            progress.advance({k: v / (step + 1) for k, v in sums.items()})
    trainer.scheduler.step()
    run_share = len(steps) / plan.steps  # of a resumed epoch, only the steps run now count for its speed
    seconds = time.perf_counter() - started
    return _epoch_record(trainer, data, plan, dict(sums), epoch, lr, seconds, run_share, context)


def _epoch_record(
    trainer: Trainer,
    data: TrainingData,
    plan: EpochPlan,
    sums: dict[str, float],
    epoch: int,
    lr: float,
    seconds: float,
    run_share: float,
    context: DistributedContext,
) -> dict[str, Any]:
    """The epoch's line of metrics.jsonl: mean figures over every process's steps, lr, speed."""
    sums["steps"] = float(plan.steps)
    sums["samples"] = float(len(plan.order)) * run_share
    totals = context.sum(sums, trainer.device)
    steps = totals.pop("steps")
    samples = totals.pop("samples")
    record: dict[str, Any] = {"epoch": epoch + 1}
    record.update({k: v / steps for k, v in totals.items()})
    warn_if_collapsing(record, trainer.settings)
    record.update(
        {
            "noise_sigma": data.noise_sigma,
            "lr": lr,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else None,
        }
    )
    return {k: v for k, v in record.items() if v is not None}


COLLAPSE_RATIO = 0.25  # teacher foreground below this fraction of the source's: a collapsing teacher


def warn_if_collapsing(record: Mapping[str, Any], settings: TrainSettings | None = None) -> bool:
    """Log (and return True) when the teacher labels far less foreground than the source has.

    The failure of issue 11: a teacher that calls every target voxel confident background pulls
    the student to predicting nothing. The source's foreground fraction is the only prior the
    run has of how much macromolecule a box holds. The advice names only settings the run can
    still change (not the ones it already uses).
    """
    teacher, source = record.get("teacher_foreground"), record.get("source_foreground")
    if teacher is None or not source or teacher >= COLLAPSE_RATIO * source:
        return False
    advice = ["a longer --burn-in"]
    if settings is None or settings.pl_threshold != "class-quantile":
        advice.append("--pl-threshold class-quantile")
    advice.append("a lower --pl-weight")
    log.warning(
        "epoch %d: the teacher labels %.2f %% of the target voxels foreground, the source has %.2f %%: "
        "the pseudo-labels are collapsing to background (see curves.png; try %s)",
        record.get("epoch", 0),
        100 * teacher,
        100 * source,
        ", ".join(advice[:-1]) + " or " + advice[-1],
    )
    return True


def model_info(settings: TrainSettings, data: TrainingData) -> ModelInfo:
    return ModelInfo(
        architecture=VoxResNetConfig(width=settings.width),
        box=data.box,
        voxel_size=data.voxel_size,
        normalisation="zscore",
        invert=data.invert,
        method=settings.method,
        # What the teacher saw, so `pseudo-label` feeds it the same (a raw-input teacher: no denoiser).
        denoiser=settings.denoiser if get_method(settings.method)(settings).uses_denoised_target else "none",
        denoiser_params={"sigma_d": settings.sigma_d, "sigma_r": settings.sigma_r, "keep_rate": settings.keep_rate},
        eta=settings.eta,
        settings=settings_to_dict(settings),
        weights=("teacher", "student") if get_method(settings.method).has_teacher else ("student",),
    )


def _write_outputs(
    run_dir: Path, trainer: Trainer, settings: TrainSettings, data: TrainingData, history: list[dict[str, Any]]
) -> None:
    from voxuda_cli.plots import save_curves

    teacher = None
    if trainer.teacher is not None:  # until the burn-in ends, the teacher is the student
        teacher = (trainer.teacher if trainer.teacher_started_at is not None else trainer.student).state_dict()
    save_model(run_dir / ckpt.MODEL, model_info(settings, data), trainer.student.state_dict(), teacher)
    atomic_write_text(run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in history))
    if history:
        save_curves(
            run_dir / ckpt.CURVES, history, groups=CURVE_GROUPS, title=f"voxuda train --method {settings.method}"
        )


def _summary(
    settings: TrainSettings,
    run_dir: Path,
    data: TrainingData,
    history: list[dict[str, Any]],
    start_epoch: int,
    seconds: float,
    device: torch.device,
    context: DistributedContext,
) -> dict[str, Any]:
    last = history[-1] if history else {}
    losses = {k: last[k] for k in ("loss", *get_method(settings.method).loss_terms) if k in last}
    validation = {k: last[k] for k in last if k.startswith("val_")}
    return {
        "run_dir": str(run_dir),
        "model": str(run_dir / ckpt.MODEL),
        "method": settings.method,
        "epochs": settings.epochs,
        "epochs_run": max(settings.epochs - start_epoch, 0),
        "resumed_from": start_epoch if start_epoch else None,
        "samples": len(data.labelled),
        "target_samples": None if data.target is None else len(data.target),
        "box": list(data.box),
        "voxel_size": data.voxel_size,
        "noise_sigma": data.noise_sigma,
        "source_view": data.source_view if data.noise_sigma is not None else None,
        "spectral_coverage": data.spectral_coverage,
        "bn_statistics": data.bn_statistics if data.noise_sigma is not None else None,
        "final": losses,
        "pseudo_labels": {k: last[k] for k in ("pl_coverage", "pl_foreground") if k in last},
        "validation": validation or None,
        "seconds": seconds,
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in history[start_epoch:] if "samples_per_s" in r]))
        if len(history) > start_epoch
        else None,
        "device": str(device),
        "processes": context.world_size,
        "warnings": data.warnings,
        "checkpoint": _read_choice(run_dir),
    }


def _read_choice(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / selection.CHOICE
    return json.loads(path.read_text()) if path.is_file() else None
