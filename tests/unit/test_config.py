"""Node options: defaults, units, clear errors naming the option, and the documented sample
file staying in step with the option table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agora.core.config import NodeConfig, config_from_dict, option_docs, parse_duration_ms
from agora.core.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "conf" / "agora.yaml"


def test_defaults_are_cassandras():
    cfg = config_from_dict({})
    assert (cfg.num_tokens, cfg.phi_convict_threshold, cfg.commitlog_sync) == (16, 8.0, "periodic")
    assert (cfg.write_request_timeout, cfg.read_request_timeout) == (2000, 5000)
    assert cfg.commitlog_sync_period == 10_000
    assert (cfg.storage_port, cfg.native_transport_port) == (7000, 9042)


@pytest.mark.parametrize("text,ms", [(250, 250), ("2000ms", 2000), ("2s", 2000), ("3h", 10_800_000), ("1d", 86_400_000)])
def test_durations(text, ms):
    assert parse_duration_ms("x", text) == ms


@pytest.mark.parametrize("options,needle", [
    ({"num_tokens": 0}, "num_tokens"),
    ({"num_tokens": "many"}, "num_tokens"),
    ({"commitlog_sync": "sometimes"}, "commitlog_sync"),
    ({"write_request_timeout": "soon"}, "write_request_timeout"),
    ({"listen_address": "localhost-ish"}, "listen_address"),
    ({"seeds": ["not an ip"]}, "seeds"),
    ({"phi_convict_threshold": 100}, "phi_convict_threshold"),
    ({"hinted_handoff_enabled": "yes"}, "hinted_handoff_enabled"),
    ({"num_token": 4}, "num_token"),
])
def test_bad_options_name_the_option(options, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict(options)
    assert needle in str(err.value)


def test_unknown_option_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean num_tokens"):
        config_from_dict({"num_token": 4})


def test_seeds_default_the_port():
    cfg = config_from_dict({"seeds": "127.0.0.1, 127.0.0.2:7001"})
    assert cfg.seed_ids() == ["127.0.0.1:7000", "127.0.0.2:7001"]


def test_sample_file_documents_every_option_with_its_default():
    options = yaml.safe_load(SAMPLE.read_text())
    assert set(options) == {name for name, _, _ in option_docs()}
    assert config_from_dict(options) == NodeConfig()
