"""The HLS structure check (admm_hls.backends.hls.structure): a clean canonical project passes, and
each rule reports a seeded violation at the edited line."""

import pytest

from admm_hls.backends.hls.structure import (
    RULES,
    StructureError,
    Violation,
    assert_structure,
    check_structure,
)

TOP = "admm_top"

TYPES_H = """\
// Shared types (a trimmed copy of the generated firmware/types.h).
#ifndef ADMM_HLS_TYPES_H
#define ADMM_HLS_TYPES_H

#include <ap_int.h>
#include <hls_stream.h>
#include <ap_axi_sdata.h>

#define ADMM_ACT_BITS 8
#define ADMM_LANES 4
#define ADMM_SHIFT_DIV 4
#define ADMM_GROUP_SIZE 12

// HLS pragmas inside kernels: _Pragma for synthesis, nothing for g++.
#ifdef __SYNTHESIS__
#define ADMM_PRAGMA(x) _Pragma(#x)
#else
#define ADMM_PRAGMA(x)
#endif

typedef ap_int<ADMM_ACT_BITS> act_t;
typedef ap_axis<8, 0, 0, 0> axis_t;
typedef ap_uint<32> word_t;
typedef ap_uint<128> beat_t;

enum admm_sizes { ADMM_BANK = 16, ADMM_BEATS = 100 };

template <bool RELU>
inline act_t admm_saturate(ap_int<64> v) {
ADMM_PRAGMA(HLS INLINE)
    const ap_int<64> lo = RELU ? 0 : -128;
    if (v < lo) return act_t(lo);
    if (v > 127) return act_t(127);
    return act_t(v);
}

#endif  // ADMM_HLS_TYPES_H
"""

INPUT_H = """\
// input: 64 activations from the AXI4-Stream
#ifndef ADMM_HLS_KERNEL_INPUT_H
#define ADMM_HLS_KERNEL_INPUT_H

#include "../types.h"

static void layer_input(hls::stream<axis_t>& in_stream, act_t out0[2][1][1][64]) {
ADMM_PRAGMA(HLS INLINE off)
READ:
    for (int i = 0; i < 64; ++i) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        const axis_t beat = in_stream.read();
        const act_t v = act_t(beat.data);
    COPY:
        for (int c = 0; c < 2; ++c) {
ADMM_PRAGMA(HLS UNROLL)
            out0[c][0][0][i] = v;
        }
    }
}

#endif
"""

FC1_H = """\
// fc1: weights from off-chip (m_axi w_fc1), 4 lanes in lockstep
#ifndef ADMM_HLS_KERNEL_FC1_H
#define ADMM_HLS_KERNEL_FC1_H

#include "../types.h"

const int FC1_K = 6;
static const int FC1_SHIFT = 16;

// One sequential burst of 100 beats.
static void wread_fc1(const beat_t* w, hls::stream<beat_t>& out) {
ADMM_PRAGMA(HLS INLINE off)
READ:
    for (int i = 0; i < 100; ++i) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        out.write(w[i]);
    }
}

static void layer_fc1(const act_t in0[2][1][1][64], act_t out0[1][1][1][16], hls::stream<beat_t>& words) {
ADMM_PRAGMA(HLS INLINE off)
    static const ap_int<8> codebook[4] = {1, -1, 2, -2};
ADMM_PRAGMA(HLS ARRAY_PARTITION variable=codebook complete dim=1)
    ap_int<24> acc[ADMM_LANES] = {};
ADMM_PRAGMA(HLS ARRAY_PARTITION variable=acc complete dim=1)
    const int rows = 64 / 3;  // a divider outside the loops runs once: fine
    int n = rows;
ISSUE:
    for (int t = 0; t < 100; ++t) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        const beat_t step = words.read();
        const int x = t / 4;
        const int y = t % 8;
    LANE:
        for (int g = 0; g < ADMM_LANES; ++g) {
ADMM_PRAGMA(HLS UNROLL)
            const word_t wd = step.range(32 * g + 31, 32 * g);
            const int code = ((wd >> 2) & 3).to_int();
            acc[g] += codebook[code] * in0[g % 2][0][0][(x + y) % 64];
            out0[0][0][0][(t / ADMM_SHIFT_DIV) % ADMM_BANK] = act_t(acc[g] >> 4);
        }
        n = n + 1;
    }
}

#endif
"""

FC2_H = """\
// fc2: weights from off-chip (m_axi w_fc2), read at an offset
#ifndef ADMM_HLS_KERNEL_FC2_H
#define ADMM_HLS_KERNEL_FC2_H

#include "../types.h"

static const int W_FC2_BASE = 8;

static void wread_fc2(const beat_t* w, hls::stream<beat_t>& out) {
ADMM_PRAGMA(HLS INLINE off)
READ:
    for (ap_uint<8> i = 0; i < ADMM_BEATS; i++) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        out.write(w[W_FC2_BASE + i]);
    }
}

static void layer_fc2(const act_t in0[1][1][1][16], act_t out0[1][1][1][16], hls::stream<beat_t>& words) {
ADMM_PRAGMA(HLS INLINE off)
ISSUE:
    for (int t = 0; t < 16; t += 1) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        beat_t step;
        words >> step;
        out0[0][0][0][t] = act_t(in0[0][0][0][t] + step.range(7, 0));
    }
}

// A spare process (not called by the clean top).
static void layer_copy(const act_t in0[1][1][1][16], act_t out0[1][1][1][16]) {
ADMM_PRAGMA(HLS INLINE off)
COPY:
    for (int t = 0; t < 16; ++t) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        out0[0][0][0][t] = in0[0][0][0][t];
    }
}

#endif
"""

OUTPUT_H = """\
// output: 16 values to the AXI4-Stream, TLAST on the last
#ifndef ADMM_HLS_KERNEL_OUTPUT_H
#define ADMM_HLS_KERNEL_OUTPUT_H

#include "../types.h"

static void layer_output(const act_t in0[1][1][1][16], hls::stream<axis_t>& out_stream) {
ADMM_PRAGMA(HLS INLINE off)
WRITE:
    for (int i = 0; i < 16; ++i) {
ADMM_PRAGMA(HLS PIPELINE II=1)
        axis_t beat;
        beat.data = in0[0][0][0][i];
        beat.keep = -1;
        beat.strb = -1;
        beat.last = (i == 15);
        out_stream.write(beat);
    }
}

#endif
"""

TOP_H = """\
#ifndef ADMM_TOP_H
#define ADMM_TOP_H
#include "types.h"
void admm_top(hls::stream<axis_t>& in_stream, hls::stream<axis_t>& out_stream, const beat_t* w_fc1,
              const beat_t* w_fc2);
#endif
"""

TOP_CPP = """\
// DATAFLOW top: processes connected by ping-pong buffers and hls::streams.
#include "admm_top.h"

#include "kernels/input.h"
#include "kernels/fc1.h"
#include "kernels/fc2.h"
#include "kernels/output.h"

#if defined(ADMM_HLS_TRACE) && !defined(__SYNTHESIS__)
#include <cstdio>
static void admm_trace(const char* node, const act_t* banks, int n) {
    for (int i = 0; i < n; ++i) printf("%s %d\\n", node, int(banks[i]));
}
#endif

void admm_top(hls::stream<axis_t>& in_stream, hls::stream<axis_t>& out_stream, const beat_t* w_fc1,
              const beat_t* w_fc2) {
#ifdef __SYNTHESIS__  // (plain g++ would warn about every unknown pragma)
#pragma HLS INTERFACE mode=ap_ctrl_chain port=return
#pragma HLS INTERFACE mode=axis port=in_stream
#pragma HLS INTERFACE mode=axis port=out_stream
#pragma HLS INTERFACE mode=m_axi port=w_fc1 offset=slave bundle=gmem0 depth=100
#pragma HLS INTERFACE mode=s_axilite port=w_fc1 bundle=control
#pragma HLS INTERFACE m_axi port=w_fc2 offset=slave bundle=gmem1 depth=108
#pragma HLS INTERFACE s_axilite port=w_fc2 bundle=control
#pragma HLS DATAFLOW
#endif

    act_t fm_in[2][1][1][64];  // input -> fc1
ADMM_PRAGMA(HLS ARRAY_PARTITION variable=fm_in complete dim=1)
    act_t fm_fc1[1][1][1][16];  // fc1 -> fc2
    act_t fm_fc2[1][1][1][16];  // fc2 -> output
    hls::stream<beat_t> words_fc1("words_fc1");
ADMM_PRAGMA(HLS STREAM variable=words_fc1 depth=4)
    hls::stream<beat_t> words_fc2;

    layer_input(in_stream, fm_in);
    wread_fc1(w_fc1, words_fc1);
    layer_fc1(fm_in, fm_fc1, words_fc1);
#if defined(ADMM_HLS_TRACE) && !defined(__SYNTHESIS__)
    admm_trace("fc1", &fm_fc1[0][0][0][0], 16);
#endif
    wread_fc2(w_fc2, words_fc2);
    layer_fc2(fm_fc1, fm_fc2, words_fc2);
    layer_output(fm_fc2, out_stream);
}
"""

CLEAN = {
    "firmware/types.h": TYPES_H,
    "firmware/kernels/input.h": INPUT_H,
    "firmware/kernels/fc1.h": FC1_H,
    "firmware/kernels/fc2.h": FC2_H,
    "firmware/kernels/output.h": OUTPUT_H,
    "firmware/admm_top.h": TOP_H,
    "firmware/admm_top.cpp": TOP_CPP,
    "firmware/weights/fc1_words.inc": "1, 2, 3 / 3,\n",  # not C++ the check reads
    "tb/tb.cpp": "int main() { for (int i = 0; i < 3; ++i) { int x = i / 3; } }\n",  # outside firmware/
}

FC1 = "firmware/kernels/fc1.h"
FC2 = "firmware/kernels/fc2.h"
TOP_FILE = "firmware/admm_top.cpp"
MARK = "SEEDED"


def seeded(path, *edits):
    """The clean project with edits (old, new, old, new, ...) in `path`, and the line marked SEEDED."""
    files = dict(CLEAN)
    for old, new in zip(edits[::2], edits[1::2]):
        assert files[path].count(old) == 1, old
        files[path] = files[path].replace(old, new)
    return files, path, marked_line(files[path])


def marked_line(text):
    return next((n for n, line in enumerate(text.splitlines(), 1) if MARK in line), None)


def in_issue_loop(statement):
    """A statement inserted in fc1's pipelined ISSUE loop."""
    return seeded(FC1, "        const int y = t % 8;\n", f"        const int y = t % 8;\n        {statement}  // {MARK}\n")


def test_clean_project_is_clean():
    assert check_structure(CLEAN, TOP) == []
    assert_structure(CLEAN, TOP)


# ------------------------------------------------------------------------------ divider


@pytest.mark.parametrize(
    "statement",
    [
        "const int z = t / 3;",
        "const int z = t % 10;",
        "const int z = t / n;",  # by a variable
        "const int z = 100 / (t + 1);",  # a parenthesised expression
        "const int z = t / (2 * 2);",
        "int z = t; z /= 6;",
        "int z = t; z %= 5;",
        "const int z = t / ADMM_GROUP_SIZE;",  # #define 12
        "const int z = t / FC1_K;",  # const int 6
        "const int z = t / rows;",  # a const, but not a literal
        "const int z = t / -4;",
    ],
)
def test_divider_in_loop_is_flagged(statement):
    files, path, line = in_issue_loop(statement)
    violations = check_structure(files, TOP)
    assert [(v.rule, v.file, v.line) for v in violations] == [("divider", path, line)]
    assert "layer_fc1" in violations[0].message and "ISSUE" in violations[0].message


@pytest.mark.parametrize(
    "statement",
    [
        "const int z = t / 8;",
        "const int z = t % 16;",
        "const int z = t / ADMM_SHIFT_DIV;",  # #define 4
        "const int z = t / (4);",
        "const int z = t % 0x10u;",
        "const int z = t / FC1_SHIFT;",  # static const int 16
        "const int z = t / ADMM_BANK;",  # enum member 16
        "int z = t; z >>= 3; z /= 1;",
    ],
)
def test_power_of_two_divisor_in_loop_is_accepted(statement):
    files, _, _ = in_issue_loop(statement)
    assert check_structure(files, TOP) == []


def test_divider_in_loop_header_and_inner_loop_is_flagged():
    files, path, line = seeded(FC1, "    for (int t = 0; t < 100; ++t) {", f"    for (int t = 0; t < 300 / 3; ++t) {{  // {MARK}")
    assert [(v.rule, v.line) for v in check_structure(files, TOP)] == [("divider", line)]
    files, path, line = seeded(
        FC1, "            acc[g] += codebook[code]", f"            acc[g] += codebook[code % 3]  // {MARK}\n           "
    )
    assert [(v.rule, v.line) for v in check_structure(files, TOP)] == [("divider", line)]


# ------------------------------------------------------------------------------ channel

FC2_CALL = "    layer_fc2(fm_fc1, fm_fc2, words_fc2);\n"
INPUT_CALL = "    layer_input(in_stream, fm_in);\n"
WREAD1_CALL = "    wread_fc1(w_fc1, words_fc1);\n"


@pytest.mark.parametrize(
    "edits, names",
    [
        # fm_in read by layer_fc1 and layer_fc2
        ((FC2_CALL, f"    layer_fc2(fm_in, fm_fc2, words_fc2);  // {MARK}\n"), ["fm_in", "layer_fc1", "layer_fc2"]),
        # fm_fc1 written by layer_fc1 and layer_fc2 (which also reads it)
        ((FC2_CALL, f"    layer_fc2(fm_fc1, fm_fc1, words_fc2);  // {MARK}\n"), ["fm_fc1", "writers"]),
        # the top stream in_stream read by two processes (and fm_in written by both)
        ((INPUT_CALL, INPUT_CALL + f"    layer_input(in_stream, fm_in);  // {MARK}\n"), ["in_stream", "2 processes"]),
        # one process reads and writes the same array
        (
            (
                "    act_t fm_fc2[1][1][1][16];",
                "    act_t fm_fc2[1][1][1][16];\n    act_t fm_loop[1][1][1][16];",
                FC2_CALL,
                FC2_CALL + f"    layer_copy(fm_loop, fm_loop);  // {MARK}\n",
            ),
            ["fm_loop", "layer_copy", "read and written"],
        ),
        # a words stream with two readers
        ((FC2_CALL, FC2_CALL + f"    layer_fc2(fm_fc1, fm_fc2, words_fc2);  // {MARK}\n"), ["words_fc2", "readers"]),
    ],
)
def test_channel_violations(edits, names):
    files, path, line = seeded(TOP_FILE, *edits)
    violations = check_structure(files, TOP)
    assert {(v.rule, v.file, v.line) for v in violations} == {("channel", path, line)}
    text = "\n".join(v.message for v in violations)
    for name in names:
        assert name in text


def test_maxi_pointer_passed_to_two_processes():
    files, path, line = seeded(
        TOP_FILE,
        "    hls::stream<beat_t> words_fc2;\n",
        "    hls::stream<beat_t> words_fc2;\n    hls::stream<beat_t> words_extra;\n",
        WREAD1_CALL,
        WREAD1_CALL + f"    wread_fc1(w_fc1, words_extra);  // {MARK}\n",
    )
    violations = check_structure(files, TOP)
    assert {(v.rule, v.file, v.line) for v in violations} == {("channel", path, line), ("maxi-burst", path, line)}
    assert all("w_fc1" in v.message and "2 processes" in v.message for v in violations)


def test_unused_top_port_is_flagged():
    files, path, _ = seeded(TOP_FILE, "    layer_output(fm_fc2, out_stream);\n", "")
    violations = check_structure(files, TOP)
    assert [v.rule for v in violations] == ["channel"] and "out_stream" in violations[0].message


def test_unknown_callee_is_conservative():
    files, path, line = seeded(TOP_FILE, FC2_CALL, f"    mystery(fm_fc1, fm_fc2, words_fc2);  // {MARK}\n")
    violations = check_structure(files, TOP)
    # read and written by the unknown process, so a second writer of fm_fc1 and a second reader of fm_fc2
    assert {v.rule for v in violations} == {"channel"}
    assert any(v.line == line and "'fm_fc1' is both read and written by mystery" in v.message for v in violations)
    assert any(v.line == line + 1 and "'fm_fc2' has 2 readers" in v.message for v in violations)


# ------------------------------------------------------------------------------ static-array


@pytest.mark.parametrize(
    "decl",
    ["    static act_t fm_x[4][1][1][64];", "    static const act_t lut[4] = {1, 2, 3, 4};"],
)
def test_static_array_in_dataflow_region(decl):
    files, path, line = seeded(TOP_FILE, "    act_t fm_fc2[1][1][1][16];", f"    act_t fm_fc2[1][1][1][16];\n{decl}  // {MARK}")
    violations = check_structure(files, TOP)
    assert [(v.rule, v.file, v.line) for v in violations] == [("static-array", path, line)]
    assert TOP in violations[0].message


def test_static_rom_inside_a_process_is_fine():
    # layer_fc1 has `static const ap_int<8> codebook[4]`: the clean project passes
    assert "static const ap_int<8> codebook" in CLEAN[FC1]
    assert check_structure(CLEAN, TOP) == []


# ------------------------------------------------------------------------------ maxi-burst

READ_LOOP = "    for (int i = 0; i < 100; ++i) {\nADMM_PRAGMA(HLS PIPELINE II=1)\n        out.write(w[i]);\n    }\n"
READ_BODY = "ADMM_PRAGMA(HLS PIPELINE II=1)\n        out.write(w[i]);\n"


@pytest.mark.parametrize(
    "old, new",
    [
        (READ_LOOP, READ_LOOP.replace("i < 100", "i <= 99").replace("w[i]);", f"w[i]);  // {MARK}")),
        (READ_LOOP, READ_LOOP.replace("int i = 0", "int i = 0, j = 0").replace("w[i]);", f"w[i]);  // {MARK}")),
        (READ_LOOP, READ_LOOP.replace("++i", "i += 2").replace("w[i]);", f"w[i]);  // {MARK}")),
        ("        out.write(w[i]);\n", f"        out.write(w[2 * i]);  // {MARK}\n"),
        (READ_BODY, f"        out.write(w[i]);  // {MARK}\n"),  # no PIPELINE
        ("        out.write(w[i]);\n", f"        out.write(*w);  // {MARK}\n"),
        ("        out.write(w[i]);\n", f"        out.write(*(w + i));  // {MARK}\n"),
        ("        out.write(w[i]);\n", f"        out.write(w[i]);\n        const beat_t* p = w; p++;  // {MARK}\n"),
        (
            "        out.write(w[i]);\n    }\n",
            f"        out.write(w[i]);\n    }}\nAGAIN:\n    for (int j = 0; j < 4; ++j) {{\n        out.write(w[j]);  // {MARK}\n    }}\n",
        ),
        ("        out.write(w[i]);\n    }\n", f"        out.write(w[i]);\n    }}\n    burst_helper(w);  // {MARK}\n"),
        ("        out.write(w[i]);\n    }\n", f"        out.write(w[i]);\n    }}\n    out.write(w[0]);  // {MARK}\n"),
    ],
)
def test_maxi_burst_violations(old, new):
    files, path, line = seeded(FC1, old, new)
    violations = check_structure(files, TOP)
    assert {(v.rule, v.file, v.line) for v in violations} == {("maxi-burst", path, line)}
    assert all("wread_fc1" in v.message and "w_fc1" in v.message for v in violations)


def test_maxi_offset_and_counter_types_are_accepted():
    # wread_fc2 reads w[W_FC2_BASE + i] with an ap_uint<8> counter and i++: canonical
    for index in ("i + W_FC2_BASE", "3 + i", "i"):
        files, _, _ = seeded(FC2, "w[W_FC2_BASE + i]", f"w[{index}]")
        assert check_structure(files, TOP) == []


@pytest.mark.parametrize("index", ["i * 2", "W_FC2_BASE", "n + i", "W_FC2_BASE - i"])
def test_maxi_burst_on_the_bare_interface_syntax(index):
    # w_fc2 is declared `#pragma HLS INTERFACE m_axi port=w_fc2 ...` (no mode=)
    files, path, line = seeded(FC2, "        out.write(w[W_FC2_BASE + i]);", f"        out.write(w[{index}]);  // {MARK}")
    violations = check_structure(files, TOP)
    assert [(v.rule, v.file, v.line) for v in violations] == [("maxi-burst", path, line)]
    assert "w_fc2" in violations[0].message and "wread_fc2" in violations[0].message


def test_maxi_pointer_passed_as_expression():
    files, path, line = seeded(TOP_FILE, WREAD1_CALL, f"    wread_fc1(w_fc1 + 4, words_fc1);  // {MARK}\n")
    violations = check_structure(files, TOP)
    assert ("maxi-burst", path, line) in {(v.rule, v.file, v.line) for v in violations}


# ------------------------------------------------------------------------------ pe-loop

OLD_PE = f"""
static void layer_old(const act_t in0[1][1][1][16], act_t out0[1][1][1][16]) {{
ADMM_PRAGMA(HLS INLINE off)
PE:
    for (int p = 0; p < 4; ++p) {{  // {MARK}
ADMM_PRAGMA(HLS UNROLL)
        ap_int<24> acc[16];
    ROW:
        for (int r = 0; r < 4; ++r) {{
        INIT:
            for (int q = 0; q < 16; ++q) {{
ADMM_PRAGMA(HLS PIPELINE II=1)
                acc[q] = in0[0][0][0][q];
            }}
        }}
        out0[0][0][0][p] = act_t(acc[p]);
    }}
}}
"""

SINGLE_PE = f"""
static void layer_pe(const act_t in0[1][1][1][16], act_t out0[1][1][1][16]) {{
    for (int p = 0; p < 4; ++p) {{  // {MARK}
#pragma HLS unroll
        for (int q = 0; q < 4; ++q) {{
#pragma HLS pipeline II=1
            out0[0][0][0][4 * p + q] = in0[0][0][0][4 * p + q];
        }}
    }}
}}
"""


@pytest.mark.parametrize("function", [OLD_PE, SINGLE_PE])
def test_unrolled_pe_loop_around_pipelined_loop(function):
    files, path, line = seeded(FC2, "\n#endif\n", function + "\n#endif\n")
    violations = check_structure(files, TOP)
    assert [(v.rule, v.file, v.line) for v in violations] == [("pe-loop", path, line)]


def test_pipeline_off_inside_unroll_is_not_a_pe_loop():
    function = SINGLE_PE.replace("#pragma HLS pipeline II=1", "#pragma HLS PIPELINE off")
    files, _, _ = seeded(FC2, "\n#endif\n", function + "\n#endif\n")
    assert check_structure(files, TOP) == []


# ------------------------------------------------------------------------------ what is not code


def test_comments_and_literals_are_not_flagged():
    files, _, _ = in_issue_loop('const char* msg = "t / 3"; const char c = \'/\'; /* t / 3 */ // x % 10')
    files[TOP_FILE] = files[TOP_FILE].replace(
        "    act_t fm_fc2[1][1][1][16];",
        "    act_t fm_fc2[1][1][1][16];\n    // static act_t x[4];\n    /* static act_t y[4];\n       t / 3 */",
    )
    assert check_structure(files, TOP) == []


TRACE_CALL = '    admm_trace("fc1", &fm_fc1[0][0][0][0], 16);\n'
TRACE_CODE = (
    TRACE_CALL
    + "    static act_t dbg[4];\n"
    + "    for (int i = 0; i < 4; ++i) dbg[i] = fm_fc1[0][0][0][i] / 3;\n"
)


def test_inactive_trace_block_is_ignored():
    files, _, _ = seeded(TOP_FILE, TRACE_CALL, TRACE_CODE)
    assert check_structure(files, TOP) == []
    # The same code where synthesis sees it is flagged (the conditional is what hides it).
    active = dict(files)
    active[TOP_FILE] = active[TOP_FILE].replace(
        "#if defined(ADMM_HLS_TRACE) && !defined(__SYNTHESIS__)\n    admm_trace",
        "#if defined(__SYNTHESIS__) || defined(ADMM_HLS_TRACE)\n    admm_trace",
    )
    rules = {v.rule for v in check_structure(active, TOP)}
    assert {"static-array", "divider", "channel"} <= rules


DIVISION = f"        const int z = t / 3;  // {MARK}"


@pytest.mark.parametrize(
    "block, flagged",
    [
        (f"#ifdef __SYNTHESIS__\n{DIVISION}\n#endif", True),
        (f"#ifndef __SYNTHESIS__\n{DIVISION}\n#endif", False),
        (f"#if !defined(ADMM_HLS_TRACE)\n{DIVISION}\n#endif", True),
        (f"#if defined ADMM_HLS_TRACE || 0\n{DIVISION}\n#endif", False),
        (f"#if defined(ADMM_LANES) && (1)\n{DIVISION}\n#endif", True),  # a macro of another file
        (f"#if UNKNOWN_MACRO\n{DIVISION}\n#endif", False),
        (f"#if ADMM_LANES > 2\n{DIVISION}\n#endif", True),
        (f"#if 0\n{DIVISION}\n#elif defined(__SYNTHESIS__)\n#endif", False),
        (f"#if 0\n        const int q = t / 5;\n#else\n{DIVISION}\n#endif", True),
        (f"#if 0\n#elif 1\n{DIVISION}\n#else\n        const int q = t / 5;\n#endif", True),
        (f"#ifdef ADMM_HLS_TRACE\n#else\n{DIVISION}\n#endif", True),
        (f"#ifdef __SYNTHESIS__\n#if 0\n#else\n{DIVISION}\n#endif\n#endif", True),
        (f"#ifndef __SYNTHESIS__\n#if 1\n{DIVISION}\n#endif\n#endif", False),
        (f"#define ADMM_LOCAL_FLAG\n#ifdef ADMM_LOCAL_FLAG\n{DIVISION}\n#endif", True),
        (f"#if (\n{DIVISION}\n#endif", False),  # unreadable: inactive, and no crash
    ],
)
def test_preprocessor_conditionals(block, flagged):
    files, path, line = in_issue_loop("int unused = 0;")
    files[path] = files[path].replace(f"        int unused = 0;  // {MARK}", block)
    line = marked_line(files[path])
    expected = [("divider", path, line)] if flagged else []
    assert [(v.rule, v.file, v.line) for v in check_structure(files, TOP)] == expected


# ------------------------------------------------------------------------------ API


def test_assert_structure_lists_every_violation():
    files, _, _ = in_issue_loop("const int z = t / 3;")
    files[TOP_FILE] = files[TOP_FILE].replace("    act_t fm_fc2[1][1][1][16];", "    act_t fm_fc2[1][1][1][16];\n    static act_t fm_x[4];")
    violations = check_structure(files, TOP)
    assert [v.rule for v in violations] == ["static-array", "divider"]  # sorted by file: admm_top.cpp < kernels/...
    with pytest.raises(StructureError) as err:
        assert_structure(files, TOP)
    assert isinstance(err.value, ValueError)
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert "[static-array]" in lines[0] and "fm_x" in lines[0] and "[divider]" in lines[1]
    assert err.value.violations == violations
    assert str(StructureError("a message")) == "a message"


def test_violation_fields_and_sorting():
    files, _, _ = in_issue_loop("const int z = t / 3 + t % 5;")
    violations = check_structure(files, TOP)
    assert len(violations) == 2 and all(isinstance(v, Violation) and v.rule in RULES for v in violations)
    assert violations == sorted(violations, key=lambda v: (v.file, v.line, v.rule))
    assert all("\n" not in v.message for v in violations)


def test_bytes_sources_are_read():
    files = {path: text.encode() for path, text in in_issue_loop("const int z = t / 3;")[0].items()}
    assert [v.rule for v in check_structure(files, TOP)] == ["divider"]


GARBAGE = [
    "}{ for ( / % [[ static ) ] ;; for for ( ; ; ) { / ",
    "void admm_top( {",
    "#if\n#elif\n#else\n#endif\n#endif\n#else\n\"unterminated\n'x\n/* open comment",
    "void admm_top(hls::stream<int>& a) {\n#pragma HLS DATAFLOW\n f(a, a[, ); static int x[; for (int i = 0; i < 4; ++i) { ADMM_PRAGMA(HLS UNROLL  x / n; }",
    "\x00\xff binary \\\n#define A(\n#if defined(\n",
]


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_does_not_raise(text):
    result = check_structure({"firmware/x.cpp": text, "firmware/admm_top.cpp": text}, TOP)
    assert isinstance(result, list)


def test_truncated_sources_do_not_raise():
    for path in (TOP_FILE, FC1):
        text = CLEAN[path]
        for cut in range(0, len(text), 97):
            files = dict(CLEAN)
            files[path] = text[:cut]
            assert isinstance(check_structure(files, TOP), list)
