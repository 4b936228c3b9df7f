"""HTTP sessions read the environment once (shared/adapters/http_sessions.py)."""

from __future__ import annotations

from shared.adapters.http_sessions import pooled_session, sdk_transport_options


def test_without_a_proxy_the_session_stops_reading_the_environment_and_keeps_the_ca_bundle() -> None:
    session = pooled_session(8, {"REQUESTS_CA_BUNDLE": "/etc/ca.pem", "NO_PROXY": "localhost"})
    assert session.trust_env is False
    assert session.verify == "/etc/ca.pem"
    assert session.get_adapter("https://example.com")._pool_maxsize == 8  # type: ignore[attr-defined]


def test_requests_precedence_of_ca_bundle_variables_is_kept() -> None:
    assert pooled_session(4, {"CURL_CA_BUNDLE": "/curl.pem"}).verify == "/curl.pem"
    both = {"CURL_CA_BUNDLE": "/curl.pem", "REQUESTS_CA_BUNDLE": "/requests.pem"}
    assert pooled_session(4, both).verify == "/requests.pem"
    assert pooled_session(4, {}).verify is True


def test_with_a_proxy_configured_requests_keeps_matching_each_url_itself() -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        session = pooled_session(4, {name: "http://proxy.contoso.com:3128"})
        assert session.trust_env is True, name
        assert sdk_transport_options({name: "http://proxy.contoso.com:3128"}) == {}, name


def test_sdk_clients_get_the_same_rule() -> None:
    assert sdk_transport_options({}) == {"use_env_settings": False}
    assert sdk_transport_options({"REQUESTS_CA_BUNDLE": "/ca.pem"}) == {
        "use_env_settings": False,
        "connection_verify": "/ca.pem",
    }
