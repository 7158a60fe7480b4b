"""Bringing a ship back through a narrow channel: whole files, most important first, installed only if intact."""

import threading

import torch

from ldm_lab.checkpoints import MANIFEST_LOCK_FILE, ManifestEntry, read_manifest, save_checkpoint, write_manifest
from ldm_lab.cli import main
from ldm_lab.files import file_lock
from ldm_lab.shipping.pack import Limits, install, pack_ship, plan_parts

MiB = 2**20


def test_parts_fill_first_fit_in_priority_order_and_leave_out_what_does_not_fit():
    limits = Limits(max_files=2, max_file_bytes=10, max_total_bytes=18)
    parts, left_out = plan_parts([6, 6, 3, 11, 4, 5, 1], limits)
    # 6 opens part 0, 6 opens part 1, 3 joins part 0; 11 exceeds a part; 4 and 5 would exceed the total; 1 fits.
    assert parts == [[0, 2, 6], [1]]
    assert left_out == [3, 4, 5]


def entry(name: str) -> ManifestEntry:
    return ManifestEntry(file=f"{name}.safetensors", sha256="", size_bytes=0, command=f"ldm-lab ship {name}",
                         git_commit="abc", data="test", metrics={}, config={}, training_seconds=1.0, device="cpu",
                         target=name, steps=1)


def test_only_returned_intact_checkpoints_are_installed_and_the_rest_keep_their_entries(tmp_path):
    device, here, out, runs = tmp_path / "device", tmp_path / "here", tmp_path / "out", tmp_path / "runs"
    for folder in (device, here, runs):
        folder.mkdir()
    (runs / "ship_summary.json").write_text("[]")
    for name in ("kept", "big"):  # stand-ins here
        save_checkpoint(name, {"w": torch.zeros(2)}, entry(name), here)
    save_checkpoint("small", {"w": torch.ones(3)}, entry("small"), device)
    save_checkpoint("big", {"w": torch.randn(300_000)}, entry("big"), device)  # 600 kB of noise: will not fit
    before = read_manifest(here)
    parts, left_out = pack_ship(out, runs, device, priority=["small"],
                                limits=Limits(max_files=1, max_file_bytes=MiB // 4, max_total_bytes=MiB // 4))
    assert len(parts) == 1 and left_out == ["checkpoints/big.safetensors"]
    installed, missing = install(out, here, tmp_path / "returned")
    assert (installed, missing) == (["small"], ["big"])
    after = read_manifest(here)
    assert after["small"].sha256 == read_manifest(device)["small"].sha256
    assert after["big"] == before["big"] and after["kept"] == before["kept"]  # file and entry still agree
    assert (tmp_path / "returned" / "ship_summary.json").is_file()


def test_install_merges_its_entries_under_the_manifest_lock_and_keeps_entries_written_meanwhile(tmp_path):
    """install() waits while another writer holds manifest.json.lock, then merges into what that writer left."""
    device, here, out, runs = tmp_path / "device", tmp_path / "here", tmp_path / "out", tmp_path / "runs"
    for folder in (device, here, runs):
        folder.mkdir()
    save_checkpoint("kept", {"w": torch.zeros(2)}, entry("kept"), here)
    save_checkpoint("small", {"w": torch.ones(3)}, entry("small"), device)
    pack_ship(out, runs, device)
    results = []
    installer = threading.Thread(target=lambda: results.append(install(out, here, tmp_path / "returned")))
    with file_lock(here / MANIFEST_LOCK_FILE):   # another ship, between reading and rewriting the manifest
        installer.start()
        installer.join(timeout=3)
        assert installer.is_alive(), "install wrote the manifest without waiting for its lock"
        write_manifest({**read_manifest(here), "shipped-meanwhile": entry("shipped-meanwhile")}, here)
    installer.join(timeout=60)
    assert results == [(["small"], [])]
    assert set(read_manifest(here)) == {"kept", "small", "shipped-meanwhile"}


def test_pack_and_unpack_from_the_command_line(tmp_path, capsys):
    device, here, out, runs = tmp_path / "device", tmp_path / "here", tmp_path / "out", tmp_path / "runs"
    for folder in (device, here, runs):
        folder.mkdir()
    (runs / "ship_summary.json").write_text("[]")
    save_checkpoint("small", {"w": torch.ones(3)}, entry("small"), device)
    assert main(["pack", str(out), "--runs", str(runs), "--checkpoints", str(device), "--priority", "small"]) == 0
    assert "packed ship-0.tar.gz" in capsys.readouterr().out
    assert main(["unpack", str(out), "--checkpoints", str(here), "--runs", str(tmp_path / "returned")]) == 0
    assert "installed 1: small" in capsys.readouterr().out
    assert read_manifest(here)["small"].sha256 == read_manifest(device)["small"].sha256
    assert (tmp_path / "returned" / "ship_summary.json").is_file()
