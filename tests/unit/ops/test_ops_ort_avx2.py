"""benchmarks/ort_avx2.py's patch: the AVX512F tests that follow an xgetbv read clear, and
nothing else changes (the copy of onnxruntime its --ort-avx2 tables time)."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).parents[3] / "benchmarks" / "ort_avx2.py"


@pytest.fixture(scope="module")
def ort_avx2():
    spec = importlib.util.spec_from_file_location("walle_bench_ort_avx2", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


XGETBV = bytes.fromhex("0f01d0")
TEST_R10D = bytes.fromhex("41f7c200000100")  # test $0x10000, %r10d
TEST_EBX = bytes.fromhex("f7c300000100")  # test $0x10000, %ebx
TEST_EAX = bytes.fromhex("a900000100")  # test $0x10000, %eax (short form)
TEST_OTHER_BIT = bytes.fromhex("f7c300000010")  # test $0x10000000, %ebx


def test_the_tests_after_an_xgetbv_read_clear(ort_avx2):
    code = b"\x90" * 64 + XGETBV + b"\x90" * 100 + TEST_R10D + b"\x90" * 9 + TEST_EBX + TEST_EAX
    patched, sites = ort_avx2.patch_avx512f_tests(code)
    assert len(patched) == len(code) and len(sites) == 3
    for test in (TEST_R10D, TEST_EBX, TEST_EAX):
        at = code.index(test)
        assert patched[at : at + len(test) - 4] == test[:-4]  # the opcode stays
        assert patched[at + len(test) - 4 : at + len(test)] == bytes(4)  # immediate 0
    # every other byte as it was
    changed = [i for i in range(len(code)) if code[i] != patched[i]]
    assert all(any(s <= i < s + 4 for s in sites) for i in changed)


def test_other_bits_and_far_or_lone_tests_stay(ort_avx2):
    far = XGETBV + b"\x90" * 2100 + TEST_EBX  # beyond the 2 KiB window
    lone = b"\x90" * 32 + TEST_R10D  # no xgetbv before it
    other = XGETBV + TEST_OTHER_BIT
    for code in (far, lone, other):
        patched, sites = ort_avx2.patch_avx512f_tests(code)
        assert patched == code and sites == []


def test_two_xgetbvs_before_one_test_patch_it_once(ort_avx2):
    code = XGETBV + b"\x90" * 10 + XGETBV + b"\x90" * 10 + TEST_EBX
    patched, sites = ort_avx2.patch_avx512f_tests(code)
    assert len(sites) == 1 and patched.endswith(TEST_EBX[:2] + bytes(4))
