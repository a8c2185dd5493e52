"""Load check (not part of the pytest suite): start the app on 127.0.0.1 and drive N concurrent browser
sessions (Playwright contexts in Debian's Chromium), each uploading a file and waiting for the
chest X-ray prediction. Reports errors, p50 / p95 time from upload to result, and the server's peak
resident memory. Bounded: N sessions, one upload each, and a hard deadline; it stops by itself.

    apt-get install -y chromium && pip install playwright==1.65.2
    python tests/load_check.py --sessions 20 --file ../shared/data/chest_xray/test/NORMAL/<any>.jpeg \
        --out runs/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from pathlib import Path

from browser_check import FLAGS, start_app  # same folder: run as a script


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def one_session(browser, port: int, file: Path, number: int, timeout_ms: int) -> dict:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)  # every action, not only the waits: 20 browsers share the same CPUs
    result: dict = {"session": number}
    try:
        await page.goto(f"http://127.0.0.1:{port}/upload", wait_until="networkidle", timeout=timeout_ms)
        started = time.perf_counter()
        await page.locator("input[type=file]").set_input_files(str(file))
        await page.get_by_text("Format:").first.wait_for(timeout=timeout_ms)
        await page.get_by_role("link", name="Chest X-ray prediction").first.click()
        await page.get_by_text("Model answer").first.wait_for(timeout=timeout_ms)
        result["seconds_to_result"] = time.perf_counter() - started
        if await page.get_by_text("Traceback").count():
            result["error"] = "traceback shown"
    except Exception as error:  # a failed session is counted, not fatal
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    finally:
        await context.close()
    return result


async def drive(port: int, file: Path, sessions: int, timeout_ms: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        try:
            return await asyncio.gather(*(one_session(browser, port, file, n, timeout_ms) for n in range(sessions)))
        finally:
            await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, required=True, help="a chest X-ray to upload in every session")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--deadline", type=int, default=600, help="seconds before everything is stopped")
    parser.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    process, port = start_app()
    peak = {"mb": rss_mb(process.pid)}
    idle_mb = peak["mb"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["mb"] = max(peak["mb"], rss_mb(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        per_session_ms = max(10_000, (args.deadline - 30) * 1000)
        results = asyncio.run(asyncio.wait_for(drive(port, args.file, args.sessions, per_session_ms), args.deadline))
    except TimeoutError:
        results = [{"session": n, "error": "deadline reached"} for n in range(args.sessions)]
    finally:
        stop.set()
        sampler.join()
        process.terminate()
        process.wait(timeout=20)
    times = sorted(r["seconds_to_result"] for r in results if "error" not in r)
    report = {
        "sessions": args.sessions,
        "file": args.file.name,
        "errors": sum(1 for r in results if "error" in r),
        "error_messages": sorted({r["error"] for r in results if "error" in r}),
        "p50_seconds": statistics.median(times) if times else None,
        "p95_seconds": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] if times else None,
        "max_seconds": times[-1] if times else None,
        "server_rss_mb_idle": round(idle_mb, 1),
        "server_rss_mb_peak": round(peak["mb"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
