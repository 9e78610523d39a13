"""The label-free guards: a runaway discriminator switches the adversarial term off, a drifting teacher pauses L_pl."""

from __future__ import annotations

import math

import pytest

from voxuda_cli.training.guards import RUNNING_STEPS, AdaptationGuard


def _feed(guard: AdaptationGuard, steps: int, **figures: float) -> None:
    for step in range(steps):
        guard.observe(dict(figures), step)


def test_a_discriminator_at_chance_keeps_the_adversarial_term() -> None:
    guard = AdaptationGuard(dis_band=1.0, pl_band=4.0)
    _feed(guard, 100, dis=math.log(2), reversal_weight=0.1)
    assert not guard.adversarial_off
    assert guard.reversal(0.1) == 0.1 and guard.weights({"dis": 1.0})["dis"] == 1.0


def test_a_runaway_discriminator_switches_the_term_off_for_good(caplog: pytest.LogCaptureFixture) -> None:
    guard = AdaptationGuard(dis_band=1.0, pl_band=0.0)
    _feed(guard, 5, dis=0.7, reversal_weight=0.1)
    with caplog.at_level("WARNING", logger="voxuda"):
        _feed(guard, 3 * RUNNING_STEPS, dis=3.0, reversal_weight=0.1)
    assert guard.adversarial_off and "runs away" in caplog.text
    assert guard.reversal(0.1) == 0.0 and guard.weights({"dis": 1.0, "seg": 1.0}) == {"dis": 0.0, "seg": 1.0}
    _feed(guard, 100, dis=0.69, reversal_weight=0.1)  # it does not come back: the game is lost
    assert guard.adversarial_off and guard.summary()["adversarial_switched_off_at_step"] is not None


def test_the_burn_in_does_not_count_and_zero_turns_the_guard_off() -> None:
    burn_in = AdaptationGuard(dis_band=1.0, pl_band=0.0)
    _feed(burn_in, 100, dis=5.0, reversal_weight=0.0)  # no reversal yet: L_dis is not a game
    assert not burn_in.adversarial_off
    off = AdaptationGuard(dis_band=0.0, pl_band=0.0)
    _feed(off, 100, dis=5.0, reversal_weight=1.0)
    assert not off.adversarial_off


def test_a_drifting_teacher_pauses_l_pl_until_it_returns() -> None:
    guard = AdaptationGuard(dis_band=0.0, pl_band=4.0)
    _feed(guard, 10, teacher_foreground=0.05, source_foreground=0.05)
    assert not guard.teacher_off
    _feed(guard, 5 * RUNNING_STEPS, teacher_foreground=0.001, source_foreground=0.05)  # collapse
    assert guard.teacher_off and guard.weights({"pl": 1.0})["pl"] == 0.0
    _feed(guard, 5 * RUNNING_STEPS, teacher_foreground=0.05, source_foreground=0.05)
    assert not guard.teacher_off and guard.weights({"pl": 1.0})["pl"] == 1.0
    _feed(guard, 5 * RUNNING_STEPS, teacher_foreground=0.5, source_foreground=0.05)  # a flood
    assert guard.teacher_off


def test_the_state_round_trips_for_an_exact_resume() -> None:
    guard = AdaptationGuard(dis_band=1.0, pl_band=4.0)
    _feed(guard, 3 * RUNNING_STEPS, dis=3.0, reversal_weight=0.1, teacher_foreground=0.001, source_foreground=0.05)
    again = AdaptationGuard(dis_band=1.0, pl_band=4.0)
    again.load_state_dict(guard.state_dict())
    assert again.state == guard.state and again.adversarial_off and again.teacher_off
