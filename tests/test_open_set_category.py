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


def test_open_set_kept_needs_enough_images_of_the_category_alone_in_every_seed():
    import pandas as pd

    rows = pd.DataFrame({"open-set.held_out_category": ["Effusion", "Effusion", "Mass", "Mass", "Nodule"],
                         "open-set.n_only_held_out": [25, 20, 40, 3, 19]})
    assert studies.open_set_kept(rows) == ["Effusion"]  # Mass: 3 in one seed; Nodule: 19 < 20
    assert studies.open_set_kept(rows, min_images=3) == ["Effusion", "Mass", "Nodule"]
