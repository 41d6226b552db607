"""`tpexplain models` and `tpexplain download`: the model zoo and its checkpoints."""
from __future__ import annotations

import click


@click.command()
def models():
    """List the model zoo and which checkpoints are present."""
    from .. import zoo
    entries = zoo.manifest()
    w = max(len(name) for name in entries)
    click.echo(f"{'name':<{w}}  {'arch':<12} weights  description")
    for name, e in entries.items():
        present = "yes" if zoo.checkpoint_path(name) is not None else "no"
        click.echo(f"{name:<{w}}  {e['arch']:<12} {present:<8} {e.get('description', '')}")
        if e.get("source"):
            click.echo(f"{'':<{w}}  source: {e['source']}")
    click.echo(f"\ndownloaded checkpoints: {zoo.checkpoints_dir()} (set TPEXPLAIN_HOME to move it)")


@click.command()
@click.argument("name")
@click.option("--url", default=None, help="Download from this address instead of the manifest's.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=None,
              help="Folder for the file (default: $TPEXPLAIN_HOME/checkpoints, else ~/.cache/tpexplain/checkpoints); "
                   "for a Hugging Face model, a model folder to pass to --weights instead of HF's cache.")
@click.option("--force", is_flag=True, help="Download even if the file is already there.")
@click.option("--sha256", "sha", default=None, help="Expected sha256 of the file, 64 hex digits (default: the manifest's, where known); file downloads only.")
def download(name, url, folder, force, sha):
    """Fetch an official checkpoint into the per-user cache (Hugging Face models: into HF's cache) and check
    that it loads."""
    from ..zoo.download import download_checkpoint
    click.echo(str(download_checkpoint(name, url=url, folder=folder, force=force, sha=sha)))
