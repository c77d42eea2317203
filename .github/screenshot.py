"""The README's screenshot of the dashboard (`make screenshot`).

`payql serve` on a throwaway SQLite database, `payql seed-demo --orders 150`, then
Debian's Chromium (through Playwright) opens the dashboard as an admin and saves
.github/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import free_port, payql_serve  # noqa: E402

from resolvers.auth import mint_token  # noqa: E402

SECRET = "screenshot-" + "x" * 32


async def shoot(base: str, out: Path) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    token = mint_token(SECRET, sub="admin", role="admin")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"{base}/dashboard#token={token}")
        await page.locator("#live[data-state='live']").wait_for()
        rows = page.locator("#payments tbody tr")
        await rows.first.wait_for()
        await page.locator("#chart[data-total]").wait_for(state="attached")
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(out))
        await browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PAYQL_DATABASE_URL": f"sqlite://{Path(tmp) / 'shot.sqlite3'}",
            "PAYQL_JWT_SECRET": SECRET,
        }
        subprocess.run(
            [sys.executable, "-m", "payql.cli", "seed-demo", "--orders", "150"],
            env={**os.environ, **env},
            cwd=ROOT,
            check=True,
        )
        with payql_serve(env, free_port()) as base:
            asyncio.run(shoot(base, ROOT / ".github" / "dashboard.png"))
    print("wrote .github/dashboard.png")


if __name__ == "__main__":
    main()
