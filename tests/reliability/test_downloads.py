"""Downloads against stalled and concurrent loopback servers: bounded in time, nothing half-written."""

import http.server
import os
import threading
import time

import pytest

from keras_vit.presets import download as download_lib


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Promises 1 MB and sends one byte every 0.2 s (a stalled mirror)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for _ in range(100):  # bounded: at most 20 s
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def _download_from_trickle(tmp_path, monkeypatch, match, **env):
    """Downloads from a trickling loopback server; the error must match, within 10 s, leaving nothing."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(ConnectionError, match=match):
            download_lib.download(f"http://127.0.0.1:{server.server_port}/w.safetensors", progress=False)
    finally:
        server.server_close()
    assert time.monotonic() - start < 10
    assert os.listdir(download_lib.downloads_dir()) == []


def test_a_trickling_server_is_abandoned_as_stalled(tmp_path, monkeypatch):
    _download_from_trickle(tmp_path, monkeypatch, "stalled", KERAS_VIT_STALL_SECONDS="1.5")


def test_the_overall_deadline_holds(tmp_path, monkeypatch):
    _download_from_trickle(
        tmp_path, monkeypatch, "KERAS_VIT_DOWNLOAD_DEADLINE", KERAS_VIT_STALL_SECONDS="30", KERAS_VIT_DOWNLOAD_DEADLINE="1"
    )


def test_bad_timeout_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_VIT_STALL_SECONDS", "soon")
    with pytest.raises(ValueError, match=r"KERAS_VIT_STALL_SECONDS must be a number of seconds"):
        download_lib.download("http://127.0.0.1:9/x", progress=False)
