# SPDX-License-Identifier: GPL-2.0-or-later
"""No import cycle among the engine's modules (plugins/module_utils) and the agent's (agent/).

Every import counts, the lazy ones inside functions too, in each form the code uses: the
collection's absolute name (ansible_collections.netxfw.firewall.plugins.module_utils.X), the
name the agent sees the engine under (netxfw_engine.X), the agent's own package (netxfw_agent.X)
and relative imports (from . import X, from .X import Y).
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# package name -> (directory, the names it is imported under)
PACKAGES = {
    "module_utils": (os.path.join(REPO, "plugins", "module_utils"),
                     ("ansible_collections.netxfw.firewall.plugins.module_utils", "netxfw_engine")),
    "netxfw_agent": (os.path.join(REPO, "agent", "netxfw_agent"), ("netxfw_agent",)),
}


def modules_of(packages):
    """{node "package.module": path} ("package.__init__" for a package's own file)."""
    out = {}
    for package, (directory, _names) in packages.items():
        for name in sorted(os.listdir(directory)):
            if name.endswith(".py"):
                out["%s.%s" % (package, name[:-3])] = os.path.join(directory, name)
    return out


def _target(packages, modules, package, dotted, name=None):
    """The node that `from <dotted> import <name>` (or `import <dotted>`) reaches, or None when it is
    outside the packages. `dotted` is absolute ("netxfw_engine.engine") or already resolved to
    ("package", "rest")."""
    if isinstance(dotted, tuple):
        package, rest = dotted
    else:
        for candidate, (_directory, names) in packages.items():
            match = [n for n in names if dotted == n or dotted.startswith(n + ".")]
            if match:
                package, rest = candidate, dotted[len(match[0]) + 1:]
                break
        else:
            return None
    if rest:
        node = "%s.%s" % (package, rest.split(".")[0])
        return node if node in modules else None
    if name is not None and "%s.%s" % (package, name) in modules:
        return "%s.%s" % (package, name)
    node = "%s.__init__" % package
    return node if node in modules else None


def import_graph(packages):
    """{node: set of nodes it imports}, from every import statement anywhere in each file."""
    modules = modules_of(packages)
    graph = dict((node, set()) for node in modules)
    for node, path in modules.items():
        package = node.split(".")[0]
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), path)
        for statement in ast.walk(tree):
            targets = []
            if isinstance(statement, ast.Import):
                targets = [_target(packages, modules, package, alias.name) for alias in statement.names]
            elif isinstance(statement, ast.ImportFrom):
                if statement.level:
                    if statement.level > 1:
                        raise AssertionError("%s: imports from above its package (level %d)" % (path, statement.level))
                    dotted = (package, statement.module or "")
                else:
                    dotted = statement.module
                targets = [_target(packages, modules, package, dotted, alias.name) for alias in statement.names]
            graph[node].update(t for t in targets if t is not None and t != node)
    return graph


def cycles(graph):
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_engine_and_the_agent_import_no_cycle():
    graph = import_graph(PACKAGES)
    # the parser sees each import form the code uses (else an empty graph would pass)
    assert "module_utils.reload" in graph["module_utils.engine"]                    # from . import reload as ...
    assert "module_utils.errors" in graph["module_utils.engine"]                    # from .errors import ...
    assert "module_utils.engine" in graph["module_utils.module_support"]            # ansible_collections... import engine
    assert "module_utils.queries" in graph["netxfw_agent.cli"]                      # from netxfw_engine import queries
    assert "module_utils.engine" in graph["netxfw_agent.cli"]                       # from netxfw_engine.engine import ...
    assert "netxfw_agent.ops" in graph["netxfw_agent.cli"]                          # from . import ops
    found = cycles(graph)
    assert found == [], "import cycles: %s" % "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("files, expected", [
    ({"a.py": "from . import b\n", "b.py": "def f():\n    from . import a\n"}, [["pkg.a", "pkg.b"]]),
    ({"a.py": "from .b import x\n", "b.py": "def f():\n    from ansible_collections.x.pkg.a import y\n"},
     [["pkg.a", "pkg.b"]]),
    ({"a.py": "import netxfw_pkg.b\n", "b.py": "import netxfw_pkg.c\n", "c.py": "from netxfw_pkg import a\n"},
     [["pkg.a", "pkg.b", "pkg.c"]]),
    ({"a.py": "from . import b\n", "b.py": "from . import c\n", "c.py": "import os\n"}, []),
])
def test_the_check_finds_cycles_lazy_ones_too(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    packages = {"pkg": (str(tmp_path), ("ansible_collections.x.pkg", "netxfw_pkg"))}
    assert cycles(import_graph(packages)) == expected
