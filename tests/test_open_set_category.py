"""The open-set protocol's held-out category: chosen by the seed, or named in the config."""
from types import SimpleNamespace

import pytest

from sdmad_lite import studies
from sdmad_lite.config import ConfigError, ExperimentConfig
from sdmad_lite.evaluation import open_set_heldout

TASK = SimpleNamespace(categories=["Atelectasis", "Effusion", "Nodule"], dataset="phantom-chest")


def test_the_seed_cycles_and_a_name_wins():
    assert [open_set_heldout(TASK, s) for s in range(4)] == [0, 1, 2, 0]
    assert open_set_heldout(TASK, 0, "Nodule") == 2
    with pytest.raises(ConfigError, match=r"'Hernia' is not a category of phantom-chest; choose one of Atelectasis"):
        open_set_heldout(TASK, 0, "Hernia")


def test_the_config_key_round_trips_and_the_study_holds_out_each_category_in_turn():
    cfg = ExperimentConfig.from_dict({"open_set_category": "Effusion"})
    assert ExperimentConfig.from_dict(cfg.to_dict()).open_set_category == "Effusion"
    cfgs = studies.open_set_per_category(seeds=(0, 1))
    held = [c.open_set_category for c in cfgs]
    assert set(held) == set(studies.OPEN_SET_CATEGORIES) and all(held.count(h) == 2 * len(studies.OPEN_SET_METHODS) for h in set(held))
    assert all("open-set" in c.protocols for c in cfgs)
