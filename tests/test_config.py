"""Configuration: defaults, the shipped YAML files, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from als_spark.config import ALSConfig, Config, IngestConfig, RecommendConfig, SimilarConfig, build_config, load_config
from als_spark.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_conf_default_yaml_is_exactly_the_built_in_defaults():
    assert load_config(CONF / "default.yaml") == Config()
    # and it lists every key, so users see all of them
    tree = yaml.safe_load((CONF / "default.yaml").read_text())
    assert tree == Config().to_dict()


def test_seed_notebook_yaml_reproduces_the_reference_notebook():
    cfg = load_config(CONF / "seed-notebook.yaml")
    assert cfg.ingest == IngestConfig(min_rating=4.0, confidence="rating")
    assert (cfg.als.rank, cfg.als.reg_param, cfg.als.max_iter, cfg.als.alpha) == (50, 0.01, 15, 1.0)
    # the notebook ranks by the plain dot product (no popularity prior, whatever the default) and
    # filters what its matrix holds, the ratings >= 4 (liked), not every rated item
    assert cfg.recommend == RecommendConfig(top_n=10, exclude="liked", popularity_weight=0.0)
    assert cfg.similar == SimilarConfig(top_k=10)


def test_overrides_are_typed_and_applied_after_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("als:\n  rank: 8\n  max_iter: 3\n")
    cfg = load_config(
        f,
        [
            "als.rank=20",
            "recommend.exclude=liked",
            "ingest.min_rating=3",
            "als.num_blocks=4",
            "recommend.popularity_weight=-1",
        ],
    )
    assert cfg.als == ALSConfig(rank=20, max_iter=3, num_blocks=4)
    assert cfg.recommend.exclude == "liked"
    # a negative weight (favour rarely chosen items) is allowed; ints are stored as floats
    assert cfg.recommend.popularity_weight == -1.0 and isinstance(cfg.recommend.popularity_weight, float)
    assert cfg.ingest.min_rating == 3.0 and isinstance(cfg.ingest.min_rating, float)


@pytest.mark.parametrize(
    ("tree", "overrides", "message"),
    [
        ({"als": {"rnak": 5}}, [], r"unknown configuration key 'als.rnak'\. Did you mean 'als.rank'\?"),
        ({"alss": {"rank": 5}}, [], r"unknown configuration section 'alss'\. Did you mean 'als'\?"),
        ({"als": {"rank": 0}}, [], r"als.rank must be a positive integer, got 0"),
        ({"als": {"rank": "ten"}}, [], r"als.rank must be a positive integer, got 'ten'"),
        ({"als": {"rank": True}}, [], r"als.rank must be a positive integer, got True"),
        ({"als": {"reg_param": -0.1}}, [], r"als.reg_param must be a number >= 0, got -0.1"),
        ({"als": {"alpha": "x"}}, [], r"als.alpha must be a number >= 0"),
        ({"als": {"max_iter": 2.5}}, [], r"als.max_iter must be a positive integer, got 2.5"),
        ({"als": {"seed": "s"}}, [], r"als.seed must be an integer"),
        ({"als": {"checkpoint_interval": -1}}, [], r"als.checkpoint_interval must be a positive integer"),
        ({"ingest": {"confidence": "stars"}}, [], r"ingest.confidence must be one of rating, binary, got 'stars'"),
        ({"ingest": {"min_rating": "four"}}, [], r"ingest.min_rating must be a number"),
        ({"ingest": {"format": "xls"}}, [], r"ingest.format must be one of auto, ml-100k, ml-1m, csv"),
        ({"recommend": {"exclude": "seen"}}, [], r"recommend.exclude must be one of rated, liked, none, got 'seen'"),
        ({"recommend": {"top_n": -3}}, [], r"recommend.top_n must be a positive integer, got -3"),
        ({"recommend": {"popularity_weight": "high"}}, [], r"recommend.popularity_weight must be a number, got 'high'"),
        (
            {"recommend": {"popularity_weight": float("inf")}},
            [],
            r"recommend.popularity_weight must be a number, got inf",
        ),
        ({"recommend": {"popularity_weight": None}}, [], r"recommend.popularity_weight must be a number, got None"),
        ({"similar": {"top_k": 0}}, [], r"similar.top_k must be a positive integer, got 0"),
        ({"als": [1, 2]}, [], r"section 'als' must be a mapping"),
        (None, ["als.rank"], r"--set expects section.key=value"),
        (None, ["rank=5"], r"--set expects section.key=value"),
        (None, ["similar.topk=5"], r"unknown configuration key 'similar.topk'\. Did you mean 'similar.top_k'\?"),
        (None, ["als.rank=[1"], r"als.rank: cannot parse value"),
    ],
)
def test_bad_configuration_is_an_error_naming_the_key(tree, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(tree, overrides)


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("als: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(scalar)


def test_empty_file_and_empty_section_mean_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()
    section = tmp_path / "section.yaml"
    section.write_text("als:\n")
    assert load_config(section) == Config()
