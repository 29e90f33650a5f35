"""Smoke test of the book benchmark: small run, all three books agree."""

from benchmarks import bench_book


def test_bench_book_small_run(tmp_path):
    r = bench_book.run(ops=5_000, seed=3)
    assert r["final_state"]["identical"]
    for key in ("batch", "numba_call", "reference"):
        assert r[key]["ops_per_s"] > 0
    assert r["numba_call"]["p50_ns"] <= r["numba_call"]["p99_ns"] <= r["numba_call"]["p999_ns"]
    out = tmp_path / "b.json"
    assert bench_book.main(["--ops", "3000", "--seed", "2", "--json", str(out)]) == 0
    assert out.exists()
