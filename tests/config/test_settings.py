import pytest
from pydantic import ValidationError

from config.settings import DEV_SECRET, Settings

STRONG = "x" * 40
SAFE = {"secret_key": STRONG, "webhook_signing_secret": "w" * 40}


def test_dev_mode_accepts_the_embedded_defaults(tmp_path):
    settings = Settings(dev_mode=True, data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'journeys.db').resolve()}"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)


def test_outside_dev_mode_the_default_secret_is_refused():
    with pytest.raises(ValidationError, match="JOURNEYS_SECRET_KEY"):
        Settings(dev_mode=False, **{**SAFE, "secret_key": DEV_SECRET})
    with pytest.raises(ValidationError, match="JOURNEYS_SECRET_KEY"):
        Settings(dev_mode=False, **{**SAFE, "secret_key": "short"})
    with pytest.raises(ValidationError, match="JOURNEYS_WEBHOOK_SIGNING_SECRET"):
        Settings(dev_mode=False, secret_key=STRONG)
    assert Settings(dev_mode=False, **SAFE).secret_key.get_secret_value() == STRONG


def test_outside_dev_mode_an_smtp_password_in_clear_over_the_network_is_refused():
    with pytest.raises(ValidationError, match="JOURNEYS_SMTP_SECURITY"):
        Settings(dev_mode=False, **SAFE, smtp_host="smtp.example.com", smtp_password="pw")
    Settings(
        dev_mode=False,
        **SAFE,
        smtp_host="smtp.example.com",
        smtp_password="pw",
        smtp_security="tls",
    )
    Settings(dev_mode=False, **SAFE, smtp_host="127.0.0.1", smtp_password="pw")


def test_settings_come_from_prefixed_environment_variables(monkeypatch):
    monkeypatch.setenv("JOURNEYS_API_PORT", "9001")
    monkeypatch.setenv("JOURNEYS_DEV_MODE", "true")
    assert Settings().api_port == 9001


def test_the_cli_refuses_to_start_with_unsafe_settings(monkeypatch, capsys):
    from runtime.cli import main

    monkeypatch.delenv("JOURNEYS_DEV_MODE", raising=False)
    monkeypatch.delenv("JOURNEYS_SECRET_KEY", raising=False)
    assert main(["api"]) == 2
    assert "JOURNEYS_SECRET_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("https://bücher.example/shop/", "https://xn--bcher-kva.example/shop"),
        ("https://Mail.Acme.example", "https://mail.acme.example"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://[::1]:8443/journeys", "https://[::1]:8443/journeys"),
        ("  ", "http://127.0.0.1:8000"),  # blank: the API's own address
    ],
)
def test_the_public_url_is_read_as_an_ascii_base_url(given, read):
    assert Settings(dev_mode=True, public_url=given).resolved_public_url == read


@pytest.mark.parametrize(
    "bad",
    [
        "mail.acme.example",  # no scheme: every link would be relative
        "ftp://acme.example",
        "https://",
        "https://acme.example/?ref=mail",
        "https://acme.example/#top",
        "https://user:pw@acme.example",
        "https://acme.example:99999",
        "https://-bücher.example",  # no valid domain in IDNA
    ],
)
def test_a_public_url_links_could_not_be_built_on_is_refused_naming_the_setting(bad):
    with pytest.raises(ValidationError, match="public_url"):
        Settings(dev_mode=True, public_url=bad)
