"""Loading an encoding (enrich/tokenizer.py): on first use only, once, and without the rank
table tiktoken would keep for pickling (~28 MB for o200k_base); counting is unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

from sidecar.enrich import tokenizer as tk


def test_loaded_on_first_use_without_the_rank_table(tmp_path: Path) -> None:
    folder = tmp_path / "enc"  # a folder of its own: the process-wide cache starts empty for it
    shutil.copytree(tk.BUNDLED_DIR, folder)
    assert not tk.is_loaded(tk.O200K, str(folder))
    assert not tk.is_loaded(tk.CL100K, str(folder))
    enc = tk.get_encoder(tk.O200K, str(folder))
    assert enc is not None
    assert tk.is_loaded(tk.O200K, str(folder)) and not tk.is_loaded(tk.CL100K, str(folder))
    assert tk.get_encoder(tk.O200K, str(folder)) is enc  # once per process
    assert enc._mergeable_ranks == {}  # only pickling used it
    assert tk.count(enc, "Hello world!") == 3 and enc.decode(enc.encode("café 世界")) == "café 世界"


def test_unusable_files_count_as_loaded_with_the_heuristic(tmp_path: Path) -> None:
    assert not tk.is_loaded(tk.CL100K, str(tmp_path))
    assert tk.get_encoder(tk.CL100K, str(tmp_path)) is None  # missing file: heuristic
    assert tk.is_loaded(tk.CL100K, str(tmp_path))  # answered at once from now on
