"""Config sections (issue 13): the flat config read in sections, the flat spellings unchanged."""

import dataclasses
import typing
import json
from pathlib import Path

import pytest

from normlab.config import FIELDS, SECTION_TYPES, SECTIONS, TrainConfig, make_config
from normlab.errors import ConfigError
from normlab.train.resolve import resolve_config

OLD = Path(__file__).parent / "reference" / "config_2f6d00d.json"  # written by commit 2f6d00d's trainer


def test_every_field_is_in_a_section_and_sections_hold_only_fields():
    in_sections = {n for names in SECTIONS.values() for n in names}
    assert set(FIELDS) - in_sections == {"recipe"}  # the recipe only fills the other fields
    assert in_sections <= set(FIELDS)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_a_section_is_the_configs_values(name):
    cfg = make_config({"dataset": "digits", "model": "mlp", "lr": 0.3, "l2": 1e-4, "seed": 7, "augment": "flip"})
    sec = cfg.section(name)
    assert type(sec) is SECTION_TYPES[name] and dataclasses.is_dataclass(sec)
    assert {f.name: getattr(sec, f.name) for f in dataclasses.fields(sec)} == \
        {n: getattr(cfg, n) for n in SECTIONS[name]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(sec, SECTIONS[name][0], None)


def test_sections_are_what_the_subsystems_get():
    cfg = make_config({"optimizer": "sgd", "lr": 0.2, "weight_decay": 0.1, "l1": 0.01})
    optim = cfg.section("optim")
    assert (optim.optimizer, optim.lr, optim.weight_decay) == ("sgd", 0.2, 0.1)
    assert not hasattr(optim, "l1") and not hasattr(optim, "dataset")
    assert cfg.section("regularization").l1 == 0.01
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'. Did you mean 'optim'?"):
        cfg.section("optimizer")


def test_a_config_json_written_before_sections_still_loads_and_stays_flat():
    old = json.loads(OLD.read_text())
    cfg = resolve_config(make_config(old))
    new = cfg.to_dict()
    assert {k: new[k] for k in old} == old  # every old value read back as written
    assert [k for k in new if k in old] == list(old)  # same keys, same order; new fields only added
    assert isinstance(cfg, TrainConfig)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_a_sections_fields_have_the_configs_types(name):
    """The section classes are written out (so editors and type checkers see their fields); each
    field keeps TrainConfig's type, checked here so the two cannot drift apart."""
    hints, section_hints = typing.get_type_hints(TrainConfig), typing.get_type_hints(SECTION_TYPES[name])
    assert section_hints == {n: hints[n] for n in SECTIONS[name]}
