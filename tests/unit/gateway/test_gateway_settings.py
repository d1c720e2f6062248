from __future__ import annotations

import pytest

from gateway import Settings
from gateway.batches.answers import Pace
from gateway.settings import SettingsError


def test_defaults_match_the_contract():
    settings = Settings.from_env({})
    assert settings == Settings(
        triton_url="127.0.0.1:8001",
        host="127.0.0.1",
        port=8000,
        max_body_bytes=25 * 1024 * 1024,
        max_image_bytes=20 * 1024 * 1024,
        max_text_items=64,
        max_image_items=8,
        max_text_chars=10_000,
        max_instruction_chars=2_000,
        request_timeout_s=30.0,
        startup_timeout_s=120.0,
        drain_s=0.0,
        keep_alive_s=75.0,
        api_keys=(),
        api_keys_file=None,
        ensemble="embed_text",
        image_ensemble="embed_image",
    )


def test_prefixed_variables_are_read_and_cast():
    settings = Settings.from_env(
        {
            "EPITHRE_TRITON_URL": "triton:8001",
            "EPITHRE_PORT": "9000",
            "EPITHRE_MAX_BODY_BYTES": "1024",
            "EPITHRE_REQUEST_TIMEOUT_S": "2.5",
            "EPITHRE_ENSEMBLE": "embed_text_v2",
            "TRITON_URL": "ignored:1",
        }
    )
    assert (settings.triton_url, settings.port, settings.max_body_bytes) == (
        "triton:8001",
        9000,
        1024,
    )
    assert (settings.request_timeout_s, settings.ensemble) == (2.5, "embed_text_v2")


def test_image_settings_are_read_from_their_variables():
    settings = Settings.from_env(
        {
            "EPITHRE_MAX_IMAGE_BYTES": "1000",
            "EPITHRE_MAX_IMAGE_ITEMS": "2",
            "EPITHRE_IMAGE_ENSEMBLE": "embed_image_v2",
        }
    )
    assert (settings.max_image_bytes, settings.max_image_items) == (1000, 2)
    assert settings.image_ensemble == "embed_image_v2"


def test_api_keys_are_split_on_commas_and_blanks_dropped():
    settings = Settings.from_env({"EPITHRE_API_KEYS": " k1, k2 ,,"})
    assert settings.api_keys == ("k1", "k2")
    assert Settings.from_env({"EPITHRE_API_KEYS": ""}).api_keys == ()


def test_api_keys_file_is_merged_skipping_comments_and_blank_lines(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# rotated 2026-11\nk3\n\n  k2  \n#k4\n")
    settings = Settings.from_env({"EPITHRE_API_KEYS": "k1,k2", "EPITHRE_API_KEYS_FILE": str(path)})
    assert settings.api_keys == ("k1", "k2", "k3")


def test_api_keys_file_alone_turns_authentication_on(tmp_path):
    path = tmp_path / "keys"
    path.write_text("only\n")
    assert Settings.from_env({"EPITHRE_API_KEYS_FILE": str(path)}).api_keys == ("only",)


def test_missing_api_keys_file_raises_naming_the_variable(tmp_path):
    missing = str(tmp_path / "absent")
    with pytest.raises(
        SettingsError, match=r"^EPITHRE_API_KEYS_FILE='.*absent': FileNotFoundError$"
    ):
        Settings.from_env({"EPITHRE_API_KEYS_FILE": missing})


def test_api_keys_never_appear_in_repr():
    assert "secret" not in repr(Settings(api_keys=("secret",)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EPITHRE_PORT", "eighty"),
        ("EPITHRE_MAX_TEXT_ITEMS", "0"),
        ("EPITHRE_MAX_IMAGE_BYTES", "-5"),
        ("EPITHRE_REQUEST_TIMEOUT_S", "-1"),
        ("EPITHRE_DRAIN_S", "-0.5"),
        ("EPITHRE_KEEP_ALIVE_S", "0"),
        ("EPITHRE_BATCH_WORKER", "maybe"),
        ("EPITHRE_BATCH_CHUNK_LINES", "0"),
        ("EPITHRE_BATCH_IN_FLIGHT_BESIDE_REALTIME", "0"),
        ("EPITHRE_BATCH_REALTIME_QUIET_S", "0"),
    ],
)
def test_bad_value_raises_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}='{value}'"):
        Settings.from_env({name: value})


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("True", True)])
def test_the_batch_worker_can_be_turned_off_on_a_serving_replica(value, expected):
    assert Settings.from_env({"EPITHRE_BATCH_WORKER": value}).batch_worker is expected
    assert Settings().batch_worker is True


def test_the_batch_pace_is_read_alone_beside_realtime_traffic_and_after_it():
    settings = Settings.from_env(
        {
            "EPITHRE_BATCH_MAX_IN_FLIGHT": "32",
            "EPITHRE_BATCH_IN_FLIGHT_BESIDE_REALTIME": "2",
            "EPITHRE_BATCH_REALTIME_QUIET_S": "2.5",
        }
    )
    assert Pace.of(settings) == Pace(alone=32, beside_realtime=2, quiet_s=2.5)
    assert Pace.of(Settings()) == Pace(alone=16, beside_realtime=1, quiet_s=10.0)


def test_file_settings_are_read_from_their_variables():
    settings = Settings.from_env(
        {
            "EPITHRE_DATA_DIR": "/var/lib/epithre",
            "EPITHRE_MAX_FILE_BYTES": "1000",
            "EPITHRE_MIN_UPLOAD_BYTES_PER_S": "2.5",
            "EPITHRE_FILE_QUOTA_BYTES": "0",
            "EPITHRE_BATCH_FILE_EXPIRY_S": "3600",
        }
    )
    assert (settings.data_dir, settings.max_file_bytes, settings.min_upload_bytes_per_s) == (
        "/var/lib/epithre",
        1000,
        2.5,
    )
    assert (settings.file_quota_bytes, settings.batch_file_expiry_s) == (0, 3600)
    defaults = Settings()
    assert (defaults.data_dir, defaults.max_file_bytes) == ("data", 200 * 1024 * 1024)
    assert defaults.batch_file_expiry_s == 30 * 24 * 3600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EPITHRE_MAX_FILE_BYTES", "0"),
        ("EPITHRE_MIN_UPLOAD_BYTES_PER_S", "0"),
        ("EPITHRE_FILE_QUOTA_BYTES", "-1"),
        ("EPITHRE_BATCH_FILE_EXPIRY_S", "soon"),
    ],
)
def test_bad_file_settings_raise_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}='{value}'"):
        Settings.from_env({name: value})


def test_a_database_url_moves_the_metadata_to_postgresql_and_stays_out_of_repr():
    url = "postgresql://epithre:hunter2@db:5432/epithre"
    settings = Settings.from_env({"EPITHRE_DATABASE_URL": url})
    assert (settings.database_url, Settings().database_url) == (url, None)
    assert "hunter2" not in repr(settings)


def test_a_database_url_that_is_not_postgresql_is_refused_without_repeating_it():
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"EPITHRE_DATABASE_URL": "mysql://epithre:hunter2@db/epithre"})
    assert str(refused.value) == "EPITHRE_DATABASE_URL: must be a postgresql:// URL"


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["EPITHRE_MAX_IMAGE_PIXELS", "EPITHRE_TEXT_PARTS"])
def test_model_facts_are_not_settings(name):
    # The pixel cap and the text tower's instances come from Triton's configs.
    assert Settings.from_env({name: "7"}) == Settings()
