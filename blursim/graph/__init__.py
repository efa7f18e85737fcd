"""Network graph: build from a spec, validate, compile to an execution program."""

from blursim.graph.build import build_graph, check_dataset_fit, check_task_fit, validate_network
from blursim.graph.compile import PopPlan, Program, ProjPlan, as_program, compile_network

__all__ = [
    "PopPlan",
    "Program",
    "ProjPlan",
    "as_program",
    "build_graph",
    "check_dataset_fit",
    "check_task_fit",
    "compile_network",
    "validate_network",
]
