"""``blursim genome import|export``: genomes in the layout of the paper authors' code.

See :mod:`blursim.authors` and docs/authors_layout.md.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("genome", help="convert genomes to and from the paper authors' layout; compare two")
    gsub = p.add_subparsers(dest="genome_command", metavar="ACTION")
    imp = gsub.add_parser(
        "import", help="their genome (NPZ or nested JSON) -> blursim genome JSON",
        description="Read a genome in the layout of the paper authors' published code and write it as a "
        "blursim genome document. Their neuron transform T [2k x 2k] gives nu = T[:k, k:]^T and "
        "mu = T[k:, :k]^T; values blursim has no field for are kept in meta.authors, so that "
        "'blursim genome export' gives back the same arrays.")
    imp.add_argument("file", metavar="FILE", help="their genome: .npz (keys like neuron/transform) or .json")
    imp.add_argument("--out", "-o", required=True, metavar="GENOME_JSON",
                     help="blursim genome document to write; with a species axis and no --species, one "
                     "file per species: NAME_0.json, NAME_1.json, ...")
    imp.add_argument("--species", type=int, default=None, metavar="INDEX",
                     help="keep only this species of a genome with a species axis")
    imp.add_argument("--layer", type=int, default=None, metavar="INDEX",
                     help="the layer to import from a per-layer genome (a layer axis in front)")
    imp.add_argument("--group", default="default", help="name of the genome group (default: default)")
    imp.set_defaults(func=cmd_import)
    exp = gsub.add_parser(
        "export", help="blursim genome JSON -> their genome (NPZ or nested JSON)",
        description="Write blursim genome documents in the layout of the paper authors' code; several "
        "genomes are stacked along a species axis. The output's suffix (.npz or .json) picks the format.")
    exp.add_argument("genomes", nargs="+", metavar="GENOME_JSON", help="blursim genome document(s)")
    exp.add_argument("--out", "-o", required=True, metavar="FILE", help="file to write: .npz or .json")
    exp.add_argument("--group", default=None, help="genome group to export (default: the only one)")
    exp.add_argument("--dtype", choices=["float32", "float64"], default=None,
                     help="array dtype (default: as imported, else float64; their code uses float32)")
    exp.set_defaults(func=cmd_export)
    from blursim.cli.runs import add_genome_diff

    add_genome_diff(gsub)  # genome diff A B (blursim.runs.genome_diff)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_import(args) -> int:
    from pathlib import Path

    from blursim.authors import import_authors_genome, read_authors_file
    from blursim.errors import GenomeError, shorten
    from blursim.io import atomic_write_text
    from blursim.limits import MAX_DOCUMENT_BYTES, format_bytes

    flat = read_authors_file(args.file)
    genomes = import_authors_genome(flat, layer=args.layer, species=args.species, group=args.group,
                                    source=args.file)
    out = Path(args.out)
    if len(genomes) == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{s}{out.suffix or '.json'}") for s in range(len(genomes))]
    texts = [g.model_dump_json(indent=2, exclude_none=True) + "\n" for g in genomes]
    for text in texts:  # what validate and run read back; checked before any file is written
        if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
            raise GenomeError(f"would make a genome document of {format_bytes(len(text.encode('utf-8')))}, more "
                              f"than the {format_bytes(MAX_DOCUMENT_BYTES)} blursim reads", path=args.file)
    for path, text in zip(paths, texts):
        atomic_write_text(path, text)
    shown = ", ".join(map(str, paths)) if len(paths) <= 3 else f"{paths[0]} ... {paths[-1]}"
    print(f"{shorten(args.file, 200)}: k={genomes[0].k}, {len(genomes)} genome(s) -> {shorten(shown, 400)}")
    return 0


def cmd_export(args) -> int:
    from blursim.authors import export_authors_genome, write_authors_file
    from blursim.spec import load_genome

    genomes = [load_genome(p) for p in args.genomes]
    flat = export_authors_genome(genomes if len(genomes) > 1 else genomes[0], group=args.group,
                                 dtype=args.dtype)
    write_authors_file(args.out, flat)
    print(f"{args.out}: {len(flat)} arrays, {len(genomes)} species")
    return 0
