"""The project builder: the project tree and manifest, determinism, atomic writes, the vendor
flow scripts (run_hls.tcl through tclsh with stub commands, hls_config.cfg parsed), a
synthesizability scan and the structure check of the generated C++, and the CLI build + csim
end to end."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from admm_hls import reference
from admm_hls.backends.hls.structure import check_structure
from admm_hls.build.project import BLOB_ALIGN, build, open_project
from admm_hls.calibration import measure_ranges
from admm_hls.errors import UserError
from admm_hls.ir.lower import lower_model
from ci import missing

TOP = "admm_top"


# -- a small lowered model ------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 3 * 3, 24)
        self.fc2 = nn.Linear(24, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def tiny_graph():
    torch.manual_seed(0)
    model = Tiny().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # prune: fc1 hard (relative index with fillers), fc2 lightly (dense)
        for layer, keep in ((model.fc1, 0.12), (model.fc2, 0.9), (model.conv, 0.5)):
            mask = torch.rand(layer.weight.shape, generator=g) < keep
            layer.weight.mul_(mask)
        # fc1 on 2-bit ADMM levels {-1, 1}: narrow entries, so fillers pay off
        lv = torch.sign(model.fc1.weight).to(torch.int8)
        model.fc1.weight.copy_(lv.float() * 0.125)
    x = torch.randn(16, 1, 8, 8, generator=g)
    levels = {"fc1": (lv.numpy(), 0.125, 2)}
    return lower_model(model, (1, 8, 8), measure_ranges(model, [x]), levels, name="tiny"), x


@pytest.fixture(scope="module")
def tiny():
    return tiny_graph()


@pytest.fixture(scope="module")
def project(tiny, tmp_path_factory):
    graph, _ = tiny
    return build(graph, tmp_path_factory.mktemp("p") / "proj", pe=2, pe_layers={"fc1": 3}, onchip_kb=0.05,
                 n_vectors=4, progress=False)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_project_tree_and_manifest(project, tiny):
    graph, _ = tiny
    files = tree(project.path)
    for name in ("run_hls.tcl", "hls_config.cfg", "Makefile", "README.md", "manifest.json", f"tb/tb_{TOP}.cpp"):
        assert name in files, name
    assert any(p.startswith("firmware/") and p.endswith(".cpp") for p in files)
    assert any(p.startswith("tb/data/") for p in files)
    assert not [p for p in files if not re.match(r"(firmware/|tb/|rtl/)|[\w.]+$", p)]
    # The RTL of the same packed weights comes along when the RTL backend covers the model.
    assert project.manifest["rtl"]["written"] and f"rtl/{TOP}.v" in files and "rtl/run_cocotb.py" in files
    m = json.loads(files["manifest.json"])
    assert m == project.manifest
    assert m["top"] == TOP and m["model"] == "tiny" and m["vectors"]["count"] == 4
    # Every file but the manifest itself is listed with its hash.
    assert set(m["files"]) == set(files) - {"manifest.json"}
    for path, info in m["files"].items():
        assert info["bytes"] == len(files[path]) and info["sha256"] == hashlib.sha256(files[path]).hexdigest()
    # Layers in topological order; the plan's processes (all but the flatten alias) with their lanes.
    assert [l["name"] for l in m["layers"]] == [n.name for n in graph.topo()]
    hw = {l["name"]: l for l in m["hardware"]["layers"]}
    assert set(hw) == {n.name for n in graph.topo()} - {"flatten"}
    weighted = {l["name"]: l for l in m["layers"] if "format" in l}
    assert set(weighted) == {"conv", "fc1", "fc2"}
    assert hw["fc1"]["lanes"] == 3 and hw["conv"]["lanes"] == 2 and hw["fc2"]["lanes"] == 2
    assert hw["pool"]["lanes"] == 2 and hw["pool"]["ranges"] == [[0, 3], [3, 6]]
    for name, l in weighted.items():
        node, h = graph[name], hw[name]
        assert sum(h["rows_per_group"]) == node.packed.layer.rows
        assert h["groups"] * len(h["bands"]) == h["lanes"]
        assert sum(h["nonzeros_per_group"]) == l["sizes"]["nonzeros"]
        assert 0 < h["lockstep_efficiency"] <= 1 and h["entries"] <= h["lockstep_entries"]
        assert h["cycles"]["hls"] > h["iterations"] and h["cycles"]["rtl"] > h["iterations"]
        assert l["multiplier"]["m0"] == node.quant["multiplier"].m0
        assert l["format"] == node.packed.format and h["acc_bits"] >= node.quant["acc_bits"]
        assert l["cycles_estimate"] == h["cycles"]["hls"] and l["placement"] == h["placement"]
    # The estimate is the plan's: one image through the dataflow pipeline (a chain here).
    assert m["totals"]["cycles_estimate"] == sum(h["cycles"]["hls"] for h in hw.values())
    assert m["totals"]["interval_estimate"] == max(h["cycles"]["hls"] for h in hw.values())
    assert m["interface"]["control"] == "ap_ctrl_chain" and "in_stream_TDATA" in m["interface"]["ports"]
    # onchip_kb=0.05 (51 bytes): the larger layers go off-chip, 64-byte aligned, no overlap.
    blob = sorted((hw[n]["blob_offset"], hw[n]["blob_bytes"]) for n in weighted if hw[n]["placement"] == "blob")
    assert blob, "some layer should be off-chip"
    assert all(off % BLOB_ALIGN == 0 for off, _ in blob)
    assert all(a[0] + a[1] <= b[0] for a, b in zip(blob, blob[1:]))
    for n in weighted:
        rom_bytes = 4 * hw[n]["groups"] * hw[n]["words_per_group"]
        assert hw[n]["placement"] == ("blob" if rom_bytes > 51.2 else "rom")
    assert len(files[m["weight_blob"]["file"]]) == m["weight_blob"]["bytes"] == blob[-1][0] + blob[-1][1]
    assert [p for p in files if p.endswith("weights.bin")] == [m["weight_blob"]["file"]]
    assert m["interface"]["m_axi"] == [b["port"] for b in m["weight_blob"]["layers"]]
    mem = m["hardware"]["memory"]
    assert mem["fits"] is True and mem["bram36"] == sum(i["bram36"] for i in mem["items"])
    # every edge says what it is: ping-pong buffers (with their storage) and the weight streams
    edges = {c["name"]: c for c in m["hardware"]["channels"]}
    assert {c["kind"] for c in edges.values()} == {"pipo", "stream"}
    for name in weighted:
        h = hw[name]
        assert edges[f"s_words_{h['ident']}"]["bits"] == 32 * h["groups"]
        assert edges[f"s_slots_{h['ident']}"]["bits"] > h["groups"] * h["acc_bits"]
    readme = files["README.md"].decode()
    assert "vitis_hls -f run_hls.tcl" in readme and "v++ -c --mode hls" in readme and "| fc1 |" in readme
    assert "ap_ctrl_chain" in readme and "`fm_conv`" in readme


def test_no_blob_when_everything_fits(tiny, tmp_path):
    graph, _ = tiny
    p = build(graph, tmp_path / "rom", n_vectors=2, progress=False)
    assert not [f for f in tree(p.path) if f.endswith("weights.bin")]
    assert p.manifest["weight_blob"] is None and p.manifest["interface"]["m_axi"] == []
    assert all(l["placement"] == "rom" for l in p.manifest["layers"] if "format" in l)


def test_two_builds_are_byte_identical(tiny, tmp_path):
    graph, _ = tiny
    a = build(graph, tmp_path / "a", pe=2, onchip_kb=0.05, n_vectors=3, progress=False)
    b = build(tiny_graph()[0], tmp_path / "b", pe=2, onchip_kb=0.05, n_vectors=3, progress=False)
    ta, tb = tree(a.path), tree(b.path)
    assert ta.keys() == tb.keys()
    for path in ta:
        assert ta[path] == tb[path], path


def siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("exc", [RuntimeError("render broke"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing(tiny, tmp_path, monkeypatch, exc):
    from admm_hls.build import project as project_mod

    graph, _ = tiny

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(project_mod, "test_vectors", boom)  # after the sources are rendered
    with pytest.raises(type(exc)):
        build(graph, tmp_path / "out", n_vectors=2, progress=False)
    assert siblings(tmp_path) == []


def test_failed_rebuild_keeps_the_old_project(tiny, tmp_path, monkeypatch):
    from admm_hls.backends.hls import render

    graph, _ = tiny
    old = tree(build(graph, tmp_path / "out", n_vectors=2, progress=False).path)
    monkeypatch.setattr(render, "render_project_sources", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build(graph, tmp_path / "out", n_vectors=2, force=True, progress=False)
    assert siblings(tmp_path) == ["out"] and tree(tmp_path / "out") == old


def test_existing_folder_refused_unless_force(tiny, tmp_path):
    graph, _ = tiny
    out = tmp_path / "out"
    out.mkdir()
    (out / "stray.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty: pass --force to replace it"):
        build(graph, out, n_vectors=2, progress=False)
    assert (out / "stray.txt").read_text() == "mine"
    p = build(graph, out, n_vectors=2, force=True, progress=False)
    assert not (out / "stray.txt").exists() and (p.path / "manifest.json").is_file()
    assert siblings(tmp_path) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    build(graph, empty, n_vectors=2, progress=False)  # an empty folder is fine without --force
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        build(graph, tmp_path / "file", n_vectors=2, force=True, progress=False)


def test_pe_layers_by_module_path(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(8, 4)
    graph = lower_model(model, (4,), measure_ranges(model, [x]))
    p = build(graph, tmp_path / "seq", pe=1, pe_layers={"3": 2, "_1": 3}, n_vectors=2, progress=False)
    pes = {l["name"]: (l["module"], l["lanes"]) for l in p.manifest["layers"] if "format" in l}
    assert pes == {"_1": ("1", 3), "_3": ("3", 2)}
    assert p.csim().passed


def test_bad_options_are_user_errors(tiny, tmp_path):
    graph, _ = tiny
    for kwargs, msg in (({"top": "1top"}, "C identifier"), ({"pe": 0}, "PE count"),
                        ({"pe_layers": {"nope": 2}}, "no layer with PEs of that name"), ({"clock_ns": 0}, "--clock"),
                        ({"vectors": np.zeros((2, 3))}, "shape"), ({"vectors": np.full((1, 1, 8, 8), 300)}, "range")):
        with pytest.raises(UserError, match=msg):
            build(graph, tmp_path / "x", progress=False, **kwargs)
    assert siblings(tmp_path) == []


# -- the vendor flows -----------------------------------------------------------------------------
STUBS = r"""
set ::calls {}
proc record {args} { lappend ::calls $args }
foreach cmd {open_project set_top add_files open_solution set_part create_clock csim_design csynth_design
             cosim_design export_design close_project} {
    proc $cmd {args} "record $cmd {*}\$args"
}
proc unknown {args} {
    if {[string match config_* [lindex $args 0]]} { record {*}$args; return }
    error "run_hls.tcl called an unexpected command: $args"
}
rename exit _exit
proc exit {args} { record exit {*}$args }
source [lindex $argv 0]
foreach c $::calls { puts $c }
"""


def run_tcl(project_dir: Path, tmp_path: Path, env: dict | None = None) -> list[list[str]]:
    if not shutil.which("tclsh"):
        missing("tclsh is not installed (apt-get install tcl)")
    script = tmp_path / "stubs.tcl"
    script.write_text(STUBS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADMM_HLS_")} | (env or {})
    proc = subprocess.run(["tclsh", str(script), str(project_dir / "run_hls.tcl")], capture_output=True, text=True,
                          cwd=tmp_path, env=clean, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():  # each line is a Tcl list: parse it with Tcl's rules
        out.append(subprocess.run(["tclsh"], input=f"foreach w {{{line}}} {{puts $w}}", capture_output=True,
                                  text=True).stdout.splitlines())
    return out


def test_run_hls_tcl_with_stub_commands(project, tmp_path):
    calls = run_tcl(project.path, tmp_path)
    names = [c[0] for c in calls]
    assert names[0] == "open_project" and names[-1] == "exit"
    assert ["set_top", TOP] in calls
    assert ["set_part", project.manifest["part"]] in calls
    clock = next(c for c in calls if c[0] == "create_clock")
    assert float(clock[clock.index("-period") + 1]) == project.manifest["clock_ns"]
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert step in names
    assert ["export_design", "-format", "ip_catalog"] in calls
    assert names.index("open_solution") < names.index("set_part") < names.index("csim_design")
    added, tb = [], []
    for c in calls:
        if c[0] == "add_files":
            args = c[1:]
            is_tb = "-tb" in args
            args = [a for a in args if a != "-tb"]
            if "-cflags" in args:
                i = args.index("-cflags")
                assert "-I" in args[i + 1] and "firmware" in args[i + 1]
                del args[i:i + 2]
            (tb if is_tb else added).extend(args)
    root = project.path.resolve()
    for f in added + tb:
        assert Path(f).exists() and Path(f).resolve().is_relative_to(root), f
    syn = {Path(f).resolve().relative_to(root).as_posix() for f in added}
    assert syn == {p for p in tree(project.path) if p.startswith("firmware/") and p.endswith(".cpp")}
    tbrel = {Path(f).resolve().relative_to(root).as_posix() for f in tb}
    assert f"tb/tb_{TOP}.cpp" in tbrel and any(p.startswith("tb/data") for p in tbrel)
    # Steps switch off from the environment.
    names = [c[0] for c in run_tcl(project.path, tmp_path, {"ADMM_HLS_COSIM": "0", "ADMM_HLS_CSIM": "0"})]
    assert "cosim_design" not in names and "csim_design" not in names and "csynth_design" in names


def parse_cfg(text: str) -> dict[str, dict[str, list[str]]]:
    """v++ config: sections, key=value, repeated keys allowed (syn.file, tb.file), # comments."""
    out: dict[str, dict[str, list[str]]] = {"": {}}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            assert line.endswith("]"), raw
            section = line[1:-1].strip().lower()
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {raw}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def test_hls_config_cfg(project):
    text = (project.path / "hls_config.cfg").read_text()
    cfg = parse_cfg(text)
    # configparser reads it too once repeated keys are allowed
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string("[general]\n" + text)
    assert cp["hls"]["syn.top"] == TOP
    assert cfg[""]["part"] == [project.manifest["part"]]
    hls = cfg["hls"]
    assert hls["syn.top"] == [TOP] and hls["flow_target"] == ["vivado"]
    assert float(hls["clock"][0].removesuffix("ns")) == project.manifest["clock_ns"]
    assert hls["package.output.format"] == ["ip_catalog"] and hls["csim.code_analyzer"] == ["0"]
    for f in hls["syn.file"] + hls["tb.file"]:
        assert (project.path / f).is_file(), f
    assert set(hls["syn.file"]) == {p for p in tree(project.path) if p.startswith("firmware/") and p.endswith(".cpp")}
    assert f"tb/tb_{TOP}.cpp" in hls["tb.file"]
    assert project.manifest["weight_blob"]["file"] in hls["tb.file"]


def test_makefile_targets(project):
    text = (project.path / "Makefile").read_text()
    for target in ("csim:", "hls:", "vpp:", "clean:"):
        assert re.search(rf"^{target}", text, re.M), target
    assert "vitis_hls -f run_hls.tcl" in text and "v++ -c --mode hls --config hls_config.cfg" in text
    assert all(line.startswith("\t") for line in text.splitlines()
               if line.strip().startswith(("mkdir", "$(CXX)", "./", "vitis_hls", "v++", "rm ")))
    if not shutil.which("make"):  # the text checks above passed; say that make -n did not run
        missing("make is not installed (apt-get install make)")
    proc = subprocess.run(["make", "-n", "csim", "hls", "vpp", "clean"], cwd=project.path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


# -- synthesizability scan ------------------------------------------------------------------------
def strip_cpp(text: str) -> str:
    """Comments and string/char literals blanked out, line structure kept."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def constants(texts: list[str]) -> set[str]:
    """Names that are compile-time constants: #define, constexpr, enum members, template value
    parameters, and const integers initialised from literals and such constants only."""
    names: set[str] = set()
    consts: list[tuple[str, str]] = []
    for t in texts:
        names |= set(re.findall(r"#\s*define\s+(\w+)", t))
        names |= set(re.findall(r"\bconstexpr\b[^=;()]*?\b(\w+)\s*(?:=|\{)", t))
        consts += re.findall(r"\bconst\s+(?:unsigned\s+|signed\s+)?(?:int|long|short|char|unsigned|\w+_t)\s+(\w+)\s*="
                             r"\s*([^;]*);", t)
        for body in re.findall(r"\benum\b[^{;]*\{([^}]*)\}", t):
            names |= set(re.findall(r"(\w+)\s*(?:=[^,]*)?(?:,|$)", body))
        for params in re.findall(r"\btemplate\s*<([^>]*)>", t):
            names |= set(re.findall(r"\b(?:int|unsigned|long|short|bool|char|size_t|\w+_t)\s+(\w+)", params))
    grew = True
    while grew:  # a const is constant when its initializer is
        grew = False
        for name, expr in consts:
            if name not in names and all(tok.split("::")[-1] in names | {"int", "long", "unsigned"}
                                         for tok in re.findall(r"[A-Za-z_]\w*(?:::\w+)*", expr)):
                names.add(name)
                grew = True
    return names


def function_bodies(text: str):
    """(name, body) of every function definition (brace matched)."""
    head = re.compile(r"\b([A-Za-z_]\w*)\s*\(([^;{}()]|\([^()]*\))*\)\s*(?:const\s*)?\{")
    for m in head.finditer(text):
        name = m.group(1)
        if name in ("if", "for", "while", "switch", "return", "sizeof", "catch"):
            continue
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield name, text[m.end():i - 1]


def scan_synthesizable(folder: Path) -> list[str]:
    """Constructs Vitis HLS cannot synthesize (or that this project forbids) in firmware/, as
    synthesis reads it (csim-only code left out)."""
    from admm_hls.backends.hls.structure import synthesis_view

    texts = {f"firmware/{p.relative_to(folder).as_posix()}": p.read_text() for p in sorted(folder.rglob("*"))
             if p.suffix in (".cpp", ".h", ".hpp")}
    sources = {Path(p): strip_cpp(t) for p, t in synthesis_view(texts).items()}
    known = constants(list(sources.values()))
    bad = []
    for path, text in sources.items():
        where = path.name
        for rx, what in ((r"\bnew\b", "new"), (r"\bdelete\b", "delete"),
                         (r"\b(?:malloc|calloc|realloc|free)\s*\(", "dynamic memory"),
                         (r"\bstd::(?:vector|map|list|deque|string|set|unordered_\w+)\b", "std:: container"),
                         (r"#\s*include\s*<(?:vector|map|list|deque|string|set|unordered_map|unordered_set)>",
                          "std:: container header"),
                         (r"\bwhile\s*\(", "while loop")):
            for m in re.finditer(rx, text):
                bad.append(f"{where}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
        for name, body in function_bodies(text):
            if re.search(rf"(?<![\w.>]){re.escape(name)}\s*\(", body):
                bad.append(f"{where}: recursion in {name}")
        for m in re.finditer(r"\bfor\s*\(([^;]*);([^;]*);", text):
            cond = m.group(2).strip()
            bound = re.match(r"^\s*\w+\s*(?:<=|<|>=|>|!=)\s*(.+)$", cond)
            tokens = re.findall(r"[A-Za-z_]\w*(?:::\w+)*", bound.group(1)) if bound else None
            ok = bound is not None and all(t.split("::")[-1] in known for t in tokens)
            if not ok:
                bad.append(f"{where}:{text.count(chr(10), 0, m.start()) + 1}: loop bound not constant: {cond}")
    return bad


def test_generated_firmware_is_synthesizable(project):
    assert scan_synthesizable(project.path / "firmware") == []


def test_generated_firmware_passes_the_structure_check(project):
    files = {p: d for p, d in tree(project.path).items() if p.startswith("firmware/")}
    assert check_structure(files, TOP) == []
    # two off-chip layers: two m_axi ports, each read by one burst-reader process
    top = files[f"firmware/{TOP}.cpp"].decode()
    ports = [b["port"] for b in project.manifest["weight_blob"]["layers"]]
    assert len(ports) >= 2 and len(set(ports)) == len(ports)
    for k, port in enumerate(ports):
        assert re.search(rf"INTERFACE mode=m_axi port={port} offset=slave bundle=gmem{k} ", top)
        assert len(re.findall(rf"\w+\([^;]*\b{port}\b[^;]*\);", top)) == 1


@pytest.mark.parametrize("planted", [
    "int *p = new int[4];",
    "free(buf);",
    "std::vector<int> v;",
    "while (k < 3) { k++; }",
    "for (int i = 0; i < n; i++) { acc += i; }",
    "int fact(int n) { return n ? n * fact(n - 1) : 1; }",
])
def test_scan_catches_planted_violation(project, tmp_path, planted):
    copy = tmp_path / "firmware"
    shutil.copytree(project.path / "firmware", copy)
    victim = sorted(copy.glob("*.cpp"))[0]
    body = planted if planted.startswith("int fact") else (
        f"void planted_fn(int n, int *buf) {{ int k = 0; int acc = 0; {planted} }}")
    victim.write_text(victim.read_text() + "\n" + body + "\n")
    assert scan_synthesizable(copy), planted


# -- C simulation ---------------------------------------------------------------------------------
def test_csim_passes_and_matches_reference(project, tiny):
    graph, x = tiny
    result = project.csim()
    assert result.passed, result.first_failure
    assert result.n == 4 and result.mismatches == 0
    fresh = project.csim(x=x[:3].numpy())  # new float inputs: a scratch copy, the project untouched
    assert fresh.passed and fresh.n == 3
    np.testing.assert_array_equal(np.asarray(fresh.outputs).reshape(3, -1), reference.run(graph, x[:3].numpy()))
    assert open_project(project.path).manifest == project.manifest


# -- the command line -----------------------------------------------------------------------------
def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "admm_hls.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def lenet_ckpt(tmp_path_factory) -> Path:
    from admm_hls.compress.checkpoint import save_checkpoint
    from admm_hls.compress.oneshot import project_checkpoint

    keep = {"conv1": 0.6, "conv2": 0.1, "fc1": 0.01, "fc2": 0.2}
    g = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "lenet5.pt"
    save_checkpoint(project_checkpoint("lenet5", keep, {k: 3 for k in keep}, torch.randn(8, 1, 28, 28, generator=g)),
                    path)
    return path


def test_cli_build_and_csim_end_to_end(lenet_ckpt, tmp_path):
    out = tmp_path / "hls"
    env = {k: v for k, v in os.environ.items() if k != "ADMM_HLS_DATA"}
    proc = run_cli("build", str(lenet_ckpt), "--out", str(out), "--vectors", "4", "--pe", "2", "--pe-layer", "fc1=4",
                   "--onchip-kb", "4", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "fc1" in proc.stdout and str(out) in proc.stdout.splitlines()[-1]
    m = json.loads((out / "manifest.json").read_text())
    assert m["vectors"]["count"] == 4 and "random" in m["vectors"]["source"]
    fc1 = next(l for l in m["layers"] if l["name"] == "fc1")
    assert fc1["lanes"] == 4 and fc1["placement"] == "blob"
    sim = run_cli("csim", str(out))
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert "PASS" in sim.stdout and "4 vectors" in sim.stdout
    again = run_cli("build", str(lenet_ckpt), "--out", str(out), "--vectors", "4", env=env)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "exists and is not empty: pass --force to replace it" in lines[0]


def test_cli_build_uses_mnist_when_available(mnist_dir, lenet_ckpt, tmp_path):
    from admm_hls.compress.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(lenet_ckpt)
    ckpt = {k: v for k, v in ckpt.items()} | {"dataset": {"name": "mnist"}}
    path = tmp_path / "mnist_lenet.pt"
    save_checkpoint(ckpt, path)
    proc = run_cli("build", str(path), "--out", str(tmp_path / "p"), "--vectors", "3", "--data-dir", str(mnist_dir))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert m["vectors"] == {"count": 3, "source": "MNIST test images 0..2"}


def test_cli_refuses_a_design_the_part_cannot_hold(tmp_path, lenet_ckpt):
    """LeNet-5 at 16 lanes needs more block RAM than an xc7z020 has: one line with the numbers and
    the way out, nothing written; --ignore-memory builds it anyway and says it does not fit."""
    args = ("build", str(lenet_ckpt), "--pe", "16", "--part", "xc7z020clg400-1", "--vectors", "1")
    proc = run_cli(*args, "--out", str(tmp_path / "small"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "BRAM36" in proc.stderr and "has 140" in proc.stderr and "--ignore-memory" in proc.stderr
    assert siblings(tmp_path) == []
    proc = run_cli(*args, "--out", str(tmp_path / "anyway"), "--ignore-memory")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "anyway" / "manifest.json").read_text())
    assert m["hardware"]["memory"]["fits"] is False and m["hardware"]["memory"]["bram36"] > 140


def test_cli_errors_are_one_line(tmp_path, lenet_ckpt):
    proc = run_cli("csim", str(tmp_path))
    assert proc.returncode == 2 and "not an admm-hls project" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("build", str(lenet_ckpt), "--out", str(tmp_path / "x"), "--pe-layer", "fc1")
    assert proc.returncode == 2 and "NAME=N" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("build", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "y"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
