"""The SSH link's ciphers: AES-GCM first by default, the user's ssh config when it says.

Against the real asyncssh server on loopback (tests/sshserver.py); the cipher checked is
the one the connection negotiated, as ``ssh -v`` would report it.
"""

from __future__ import annotations

from pathlib import Path

from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import CIPHERS, SshOptions, connect
from tests.sshserver import SshServer


async def negotiated(srv: SshServer, config: list[str]) -> str:
    spec = HostSpec(name="h1", host="127.0.0.1", port=srv.port, user="ops")
    options = SshOptions(
        known_hosts=srv.known_hosts,
        client_keys=[str(srv.client_key_path)],
        config=config,
        use_agent=False,
        connect_timeout=30.0,
    )
    conn = await connect(spec, options)
    try:
        return str(conn.get_extra_info("send_cipher"))
    finally:
        conn.close()
        await conn.wait_closed()


async def test_without_a_config_the_link_offers_aes_gcm_first(server: SshServer) -> None:
    assert CIPHERS[0] == "aes128-gcm@openssh.com"
    assert await negotiated(server, []) == "aes128-gcm@openssh.com"


async def test_the_users_ciphers_for_the_host_are_used(server: SshServer, tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host 127.0.0.1\n    Ciphers aes256-ctr,aes192-ctr\n")
    assert await negotiated(server, [str(cfg)]) == "aes256-ctr"


async def test_ciphers_set_for_another_host_leave_ours(server: SshServer, tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        "Host elsewhere.example\n    Ciphers aes256-ctr\n\nHost *\n    ServerAliveCountMax 3\n"
    )
    assert await negotiated(server, [str(cfg)]) == "aes128-gcm@openssh.com"
