"""The package keeps the shape its maintainers agreed on: small modules, short functions, no reaching into another
module's private names, no reference to files the repository does not hold."""
import ast
import os

import pytest

from helpers import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, 'senm_plugin')
MAX_MODULE_LINES = 300  # outside archs/ and ops/, which hold the networks and kernels whole
MAX_FUNCTION_LINES = 62


def _python_files(*folders):
    for folder in folders:
        for root, _, names in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in sorted(names):
                if name.endswith('.py'):
                    yield os.path.join(root, name)


def _tree(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def test_modules_are_small_outside_the_networks():
    big = {}
    for path in _python_files('senm_plugin'):
        rel = os.path.relpath(path, PACKAGE)
        with open(path) as f:
            lines = sum(1 for _ in f)
        if rel.split(os.sep)[0] not in ('archs', 'ops') and lines > MAX_MODULE_LINES:
            big[rel] = lines
    assert not big, f'modules over {MAX_MODULE_LINES} lines: {big}'


def test_functions_are_short():
    long = {}
    for path in _python_files('senm_plugin'):
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f'{os.path.relpath(path, REPO_ROOT)}:{node.name}'] = lines
    assert not long, f'functions over {MAX_FUNCTION_LINES} lines: {long}'


@pytest.mark.parametrize('folder', ['senm_plugin', 'tests', 'benchmarks'])
def test_no_name_is_imported_from_a_private_namespace(folder):
    private = []
    for path in _python_files(folder):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('senm_plugin'):
                private += [f'{os.path.relpath(path, REPO_ROOT)}: {node.module}.{a.name}' for a in node.names
                            if a.name.startswith('_') and not a.name.startswith('__')]
    assert not private


def test_tests_take_their_helpers_from_a_module_not_from_conftest():
    users = [os.path.relpath(p, REPO_ROOT) for p in _python_files('tests')
             if any(isinstance(n, ast.ImportFrom) and n.module == 'conftest' for n in ast.walk(_tree(p)))]
    assert not users


def test_the_code_names_no_file_outside_the_repository():
    for path in list(_python_files('senm_plugin', 'benchmarks', 'tests')):
        if os.path.basename(path) == 'test_layout.py':
            continue
        with open(path) as f:
            text = f.read()
        for name in ('REFERENCE.md', 'DESIGN.md', '../shared', "'/tmp/"):
            assert name not in text, f'{os.path.relpath(path, REPO_ROOT)} names {name}'
