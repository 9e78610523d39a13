"""README's "Your own tomograms" and examples/walkthrough.sh (`make walkthrough`) cannot drift apart."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own tomograms") :]
    block = section[section.index("```bash") : section.index("```\n", section.index("```bash") + 7)]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("voxuda ")]


def test_every_readme_walkthrough_command_runs_in_the_script() -> None:
    script = (ROOT / "examples" / "walkthrough.sh").read_text()
    run = [line.strip().replace("$VOXUDA ", "voxuda ", 1) for line in script.splitlines()]
    commands = _readme_commands()
    assert len(commands) >= 4
    for command in commands:  # the script may add CPU-sized options after the README's own
        assert any(line == command or line.startswith(command + " ") for line in run), command


def test_the_walkthrough_runs_end_to_end(tmp_path: Path) -> None:
    """`make walkthrough` itself (about a minute on 2 cores): extract at picks, simulate, train, predict, paste."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "walkthrough.sh"), str(tmp_path / "walk")],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "walk" / "work" / "segmentations" / "TS_02.mrc").is_file()
