"""The clients of molecule's hot-upgrade check (molecule/shared/files/upgrade_client.py),
run here against a real forkserver serving the check's test app: they must
see a hot upgrade as the molecule verify expects it (nothing refused, the
5 s request in flight answered, the keep-alive client moved over), and must
see refused connections when the server is simply stopped."""

import json
import subprocess
import sys
import time
from pathlib import Path

from test_upgrade import reload

FILES = Path(__file__).resolve().parent.parent / "molecule" / "shared" / "files"


def run_clients(tmp_path, port, during):
    out, stop = tmp_path / "clients.json", tmp_path / "clients.stop"
    clients = subprocess.Popen([sys.executable, str(FILES / "upgrade_client.py"), str(port), str(out), str(stop),
                                "--max-seconds", "60"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        upgrades = during()
        time.sleep(6)  # the 5 s requests started before finish
        stop.write_text(json.dumps({"upgrades": upgrades}))
        clients.wait(60)
    finally:
        clients.kill()
    return json.loads(out.read_text())


def test_clients_see_a_hot_upgrade_without_a_failure(start_server, tmp_path):
    state = tmp_path / "state.json"
    server = start_server("slowapp:application", "--chdir", str(FILES), "--state-file", str(state))

    def upgrade():
        done = reload(state)
        assert done.returncode == 0, done.stdout + done.stderr
        return [json.loads(state.read_text())["last_upgrade"]["at"]]

    summary = run_clients(tmp_path, server.port, upgrade)
    loop, keepalive, slow = summary["loop"], summary["keepalive"], summary["slow"]
    assert loop["sent"] > 100 and loop["refused"] == 0 and loop["failed"] == 0, loop
    assert list(loop["statuses"]) == ["200"], loop
    assert loop["longest_gap_s"] < 2.0, loop
    assert keepalive["errors"] == 0 and keepalive["requests"] >= 5, keepalive
    # its connection, kept by a child of the old code, is answered with Connection: close once
    assert keepalive["reconnects_after_connection_close"] >= 1, keepalive
    assert slow["sent"] >= 3 and slow["ok"] == slow["sent"], slow
    assert len(slow["across_upgrade"]) >= 1, slow


def test_clients_count_refused_connections_when_the_server_stops(start_server, tmp_path):
    server = start_server("slowapp:application", "--chdir", str(FILES))

    def stop():
        server.stop()
        return []

    summary = run_clients(tmp_path, server.port, stop)
    assert summary["loop"]["refused"] > 0, summary["loop"]
    assert summary["loop"]["failed"] >= summary["loop"]["refused"]
    assert summary["keepalive"]["errors"] > 0, summary["keepalive"]
