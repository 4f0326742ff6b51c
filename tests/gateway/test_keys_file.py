"""The generated key file (SQLite state without `keys:`): workers that start together on
a fresh state directory must all end up with the same keys, or one encrypts and hashes
what the others cannot read."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from gateway.keys import _generate_file


def test_workers_generating_the_key_file_at_once_share_one(tmp_path: Path) -> None:
    for i in range(50):
        path = tmp_path / str(i) / "casegate.keys.json"
        start = threading.Barrier(4)
        results: list[object] = []

        def generate(
            path: Path = path, start: threading.Barrier = start, results: list[object] = results
        ) -> None:
            start.wait()
            try:
                results.append(_generate_file(path))
            except Exception as exc:  # a worker whose start fails stops the server
                results.append(exc)

        threads = [threading.Thread(target=generate) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not [r for r in results if isinstance(r, Exception)], results
        assert all(r == results[0] for r in results)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left
