"""Identity from a trusted reverse proxy (OIDC in front): the header names the user, but only
on requests from the trusted networks (set explicitly: there is no default). The hardening
of this mode (CSRF, names, forwarded addresses) is in tests/test_hardening_auth.py."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server import ChidoriServer


def proxied_server(tmp_path: Path, trusted: str) -> ChidoriServer:
    config = tmp_path / f"proxy-{trusted.replace('/', '_')}.yaml"
    config.write_text(
        f"security:\n  proxy_user_header: X-Forwarded-User\n  trusted_proxies: ['{trusted}']\n"
    )
    return ChidoriServer(tmp_path / f"home-{trusted.replace('/', '_')}", config=config)


def test_a_trusted_proxy_names_the_user(tmp_path: Path) -> None:
    with proxied_server(tmp_path, "127.0.0.1/32") as server:
        headers = {"X-Forwarded-User": "dana@example.org"}
        me = httpx.get(f"{server.url}/api/v1/whoami", headers=headers)
        assert me.status_code == 200
        assert me.json() == {"name": "dana@example.org", "role": "user", "team": None}
        # Unsafe requests prove they are not cross-site with a header forms cannot send.
        job = httpx.post(
            f"{server.url}/api/v1/jobs",
            headers={**headers, "X-Requested-With": "XMLHttpRequest"},
            json={"kind": "python", "application": "examples/train.py"},
        )
        assert job.status_code == 201 and job.json()["user"] == "dana@example.org"
        assert httpx.get(f"{server.url}/api/v1/whoami").status_code == 401


def test_the_header_is_ignored_from_an_untrusted_address(tmp_path: Path) -> None:
    with proxied_server(tmp_path, "10.99.0.0/16") as server:
        response = httpx.get(f"{server.url}/api/v1/whoami", headers={"X-Forwarded-User": "mallory"})
        assert response.status_code == 401
