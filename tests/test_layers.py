"""
The import arrows of C{docs/architecture.md}, checked.

The layer diagram of C{docs/architecture.md} shows each folder's job and
the direction of its imports, and its "Rules the layout keeps" say what
may import what.  These tests read every module of C{dicomd/} and of
C{twisted/plugins/} with L{ast}, without importing any, and hold the code
to the page: imports point down, the pure layers stay pure, C{net/} is
used only for Twisted wiring, no import cycle joins two folders.  They
also hold the page to the code: every path the diagram names exists, and
every module is in one of its layers.

A failure names the module, the line and the import.
"""

import ast
import re
from functools import lru_cache
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

from twisted.trial.unittest import SynchronousTestCase

from tests.support import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"

#: Where the modules are: the package, and the twistd plugins beside it.
SOURCES = ("dicomd", "twisted/plugins")

#: What modules outside C{net/} may take from it: the Twisted wiring.
NET_WIRING = {
    ("dicomd.net.requestor", "connect"),
    ("dicomd.net.acceptor", "AcceptorFactory"),
    ("dicomd.net.acceptor", "ApplicationEntity"),
    # A worker's reports reach the kernel at once (dicomd.workers).
    ("dicomd.net.sockets", "directConnection"),
    ("dicomd.net.sockets", "sendNow"),
}

#: The pure layers and what of dicomd each may import, besides itself.
#: C{interfaces.py} only declares C{zope.interface} interfaces.
PURE = {
    "dicomd/ul/": (),
    "dicomd/codec/": ("dicomd/ul/",),
    "dicomd/dimse/": ("dicomd/ul/", "dicomd/codec/", "dicomd/interfaces.py"),
}

#: What C{archive/}, the data, never imports.
ABOVE_ARCHIVE = (
    "dicomd/services/",
    "dicomd/net/",
    "dicomd/cli/",
    "dicomd/daemon.py",
    "dicomd/tap.py",
    "dicomd/peers.py",
    "dicomd/qrentity.py",
)

#: The front doors, which nothing else imports.
FRONT_DOORS = ("twisted/plugins/", "dicomd/__main__.py", "dicomd/cli/", "dicomd/tap.py", "dicomd/workerprocess.py")


class Import(NamedTuple):
    """
    One name one module imports.

    @ivar path: the importing module's file (C{"dicomd/net/protocol.py"}).
    @ivar line: the line of the import statement.
    @ivar module: the module imported from, as written but absolute
        (C{"dicomd.tls.certificates"}, C{"twisted.internet"}).
    @ivar name: the name imported from it, or C{None} for C{import module}.
    @ivar target: the file of the dicomd module this makes the importer
        depend on (C{"dicomd/tls/certificates.py"}: a submodule when
        C{name} is one), or C{None} for other packages.
    """

    path: str
    line: int
    module: str
    name: Optional[str]
    target: Optional[str]

    def __str__(self) -> str:
        statement = "import %s" % (self.module,) if self.name is None else "from %s import %s" % (self.module, self.name)
        return "%s, line %d: %s" % (self.path, self.line, statement)


def moduleFiles() -> Dict[str, str]:
    """
    The modules to check: dotted name -> file, relative to the checkout.
    """
    modules = {}
    for source in SOURCES:
        for path in sorted((REPO_ROOT / source).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = relative.as_posix()
    return modules


def readImports(path: str, source: str, modules: Dict[str, str]) -> List[Import]:
    """
    Every import in a module's source, those inside functions too: an
    import made late to dodge a cycle is still an arrow.

    @param path: the module's file, relative to the checkout.
    @param modules: L{moduleFiles}, to tell a submodule from a name.
    """
    package = path[: -len(".py")].split("/")
    # A package's __init__ is in the package itself; a module in its parent.
    package.pop()
    imports = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imports.append(Import(path, node.lineno, alias.name, None, modules.get(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            for alias in node.names:
                submodule = "%s.%s" % (module, alias.name)
                target = modules.get(submodule, modules.get(module))
                imports.append(Import(path, node.lineno, module, alias.name, target))
    return imports


def readLayers(text: str) -> List[Tuple[str, ...]]:
    """
    The layers of the diagram in the "Layers" section of
    C{docs/architecture.md}, top first, each as the folders
    (C{"dicomd/net/"}) and modules (C{"dicomd/endpoints.py"}) its lines
    name.

    A line of the diagram starts with two spaces and names its folders and
    modules before its description, separated by commas; a name without a
    folder is in C{dicomd/}.  A line of C{|} alone separates two layers.
    Further lines of a description start further right.
    """
    section = text.split("\n## Layers", 1)[1]
    diagram = section.split("```", 2)[1]
    layers: List[List[str]] = [[]]
    for line in diagram.splitlines()[1:]:
        if line.strip() == "|":
            layers.append([])
        elif re.match(r"^  \S", line):
            names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            for name in names.split(","):
                name = name.strip()
                layers[-1].append(name if "/" in name else "dicomd/" + name)
    return [tuple(paths) for paths in layers if paths]


def placeOf(path: str, places: Iterable[str]) -> Optional[str]:
    """
    The folder or module of the diagram that holds a module's file, or
    C{None}.
    """
    for place in places:
        if path == place or (place.endswith("/") and path.startswith(place)):
            return place
    return None


def findCycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """
    A cycle of a directed graph as the list of its nodes, the first one
    again at the end, or C{None} when it has none.
    """
    done: Set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: List[str] = []
        onPath: Set[str] = set()
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path.append(start)
        onPath.add(start)
        while stack:
            node, successors = stack[-1]
            for successor in successors:
                if successor in onPath:
                    return path[path.index(successor) :] + [successor]
                if successor not in done:
                    stack.append((successor, iter(sorted(graph.get(successor, ())))))
                    path.append(successor)
                    onPath.add(successor)
                    break
            else:
                stack.pop()
                path.pop()
                onPath.discard(node)
                done.add(node)
    return None


@lru_cache(maxsize=1)
def theTree() -> "Tree":
    """
    The checkout's L{Tree}, read once for all these tests.
    """
    return Tree()


class Tree:
    """
    The checkout as these tests see it: its modules, their imports, and the
    diagram's layers.

    @ivar modules: dotted name -> file.
    @ivar imports: every import of every module.
    @ivar layers: the diagram's layers, top first.
    @ivar places: each folder or module of the diagram -> its layer's
        number (0 at the top).
    """

    def __init__(self):
        self.modules = moduleFiles()
        self.imports = []
        for path in self.modules.values():
            self.imports += readImports(path, (REPO_ROOT / path).read_text(encoding="utf-8"), self.modules)
        self.layers = readLayers(ARCHITECTURE.read_text(encoding="utf-8"))
        self.places = {path: number for number, layer in enumerate(self.layers) for path in layer}

    def dicomdImports(self) -> List[Import]:
        """
        The imports of the checked modules (dicomd's own and the
        plugins), whatever imports them.
        """
        return [found for found in self.imports if found.target is not None]

    def placeOf(self, path: str) -> Optional[str]:
        """
        The folder or module of the diagram that holds a module's file.
        """
        return placeOf(path, self.places)

    def definitions(self, places: Sequence[str]) -> Dict[str, str]:
        """
        The names the modules of C{places} define at their top level
        (classes, functions, constants) -> the module that defines each.
        """
        names = {}
        for module, path in self.modules.items():
            if placeOf(path, places) is None:
                continue
            for node in ast.parse((REPO_ROOT / path).read_text(encoding="utf-8")).body:
                if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                    names.setdefault(node.name, module)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if isinstance(target, ast.Name):
                            names.setdefault(target.id, module)
        return names


class _LayoutTestCase(SynchronousTestCase):
    """
    A test of the checkout's layout, which fails naming every offender.
    """

    def setUp(self):
        self.tree = theTree()

    def assertNoProblems(self, problems: Sequence[str], rule: str) -> None:
        """
        Fail, naming the rule and each module or import that breaks it.
        """
        if problems:
            self.fail("%s:\n  %s" % (rule, "\n  ".join(problems)))


class DiagramTests(_LayoutTestCase):
    """
    The diagram of C{docs/architecture.md} is true of the checkout.
    """

    def test_readsLayers(self):
        """
        The diagram is read as the page draws it: front doors on top, the
        pure layers at the bottom, and C{dicomd/} the folder of names
        given without one.
        """
        layers = self.tree.layers
        self.assertGreater(len(layers), 5)
        self.assertIn("dicomd/cli/", layers[0])
        self.assertIn("dicomd/tap.py", layers[0])
        self.assertIn("dicomd/asconfig.py", self.tree.places)
        self.assertIn("dicomd/ul/", layers[-1])
        self.assertIn("dicomd/dimse/", layers[-1])

    def test_pathsExist(self):
        """
        Every folder and module the diagram names exists.
        """
        missing = [path for path in self.tree.places if not (REPO_ROOT / path).exists()]
        self.assertNoProblems(missing, "docs/architecture.md's diagram names what does not exist")

    def test_everyModuleHasALayer(self):
        """
        Every module is in one layer of the diagram, so that a new one is
        placed where its imports say it is.
        """
        homeless = sorted(path for path in self.tree.modules.values() if self.tree.placeOf(path) is None)
        self.assertNoProblems(homeless, "these modules are in no layer of docs/architecture.md's diagram; add them to it")


class ImportTests(_LayoutTestCase):
    """
    The imports keep the rules of C{docs/architecture.md}.
    """

    def test_readsImports(self):
        """
        The imports are read with their targets: a name, a submodule, a
        module of another package.
        """
        found = {(i.path, i.module, i.name, i.target) for i in self.tree.imports}
        self.assertIn(("dicomd/tls/settings.py", "dicomd.tls", "TLSConfigurationError", "dicomd/tls/__init__.py"), found)
        self.assertIn(("dicomd/archive/index.py", "dicomd.archive", "sql", "dicomd/archive/sql.py"), found)
        self.assertIn(("dicomd/tls/context.py", "twisted.internet", "ssl", None), found)

    def test_importsPointDown(self):
        """
        A module imports only from its own layer and the layers below it.
        """
        problems = []
        for found in self.tree.dicomdImports():
            source, target = self.tree.placeOf(found.path), self.tree.placeOf(found.target)
            if source is None or target is None:
                continue
            if self.tree.places[target] < self.tree.places[source]:
                problems.append("%s (%s is above %s)" % (found, target, source))
        self.assertNoProblems(problems, "imports point down only (docs/architecture.md)")

    def test_pureLayersImportNoTwisted(self):
        """
        C{ul/}, C{codec/} and C{dimse/} import no Twisted.
        """
        problems = [
            str(found)
            for found in self.tree.imports
            if placeOf(found.path, PURE) and found.module.split(".")[0] == "twisted"
        ]
        self.assertNoProblems(problems, "ul/, codec/ and dimse/ import no Twisted")

    def test_pureLayersStayPure(self):
        """
        C{ul/} imports nothing of dicomd but C{ul/}; C{codec/} nothing but
        C{codec/} and C{ul/}; C{dimse/} nothing but C{dimse/}, C{codec/},
        C{ul/} and the interfaces of C{interfaces.py}.
        """
        problems = []
        for found in self.tree.dicomdImports():
            place = placeOf(found.path, PURE)
            if place is None:
                continue
            allowed = (place,) + PURE[place]
            if placeOf(found.target, allowed) is None:
                problems.append("%s (%s may import only %s)" % (found, place, ", ".join(allowed)))
        self.assertNoProblems(problems, "the pure layers import nothing above them")

    def test_netOnlyForWiring(self):
        """
        Outside C{net/}, modules import C{net/} only for Twisted wiring
        (L{NET_WIRING}); DIMSE and UID names come from C{dimse/} and
        C{ul/}, failures from C{errors.py}.
        """
        definitions = self.tree.definitions(("dicomd/dimse/", "dicomd/ul/", "dicomd/errors.py"))
        problems = []
        for found in self.tree.dicomdImports():
            if found.path.startswith("dicomd/net/") or not found.target.startswith("dicomd/net/"):
                continue
            if (found.module, found.name) in NET_WIRING:
                continue
            home = definitions.get(found.name)
            hint = "import it from %s" % (home,) if home else "only %s" % (", ".join(sorted(name for _, name in NET_WIRING)),)
            problems.append("%s (%s)" % (found, hint))
        self.assertNoProblems(problems, "outside net/, modules import net/ only for Twisted wiring")

    def test_archiveIsData(self):
        """
        C{archive/} imports none of the services, the network layer, the
        front doors, the daemon, nor the peers and query/retrieve entity
        built on it.
        """
        problems = [
            str(found)
            for found in self.tree.dicomdImports()
            if found.path.startswith("dicomd/archive/") and placeOf(found.target, ABOVE_ARCHIVE)
        ]
        self.assertNoProblems(problems, "archive/ imports none of %s" % (", ".join(ABOVE_ARCHIVE),))

    def test_frontDoorsOnTop(self):
        """
        The front doors (C{twisted/plugins/}, C{__main__.py}, C{cli/},
        C{tap.py}) are imported by nothing below them.
        """
        problems = [
            str(found)
            for found in self.tree.dicomdImports()
            if placeOf(found.target, FRONT_DOORS) and not placeOf(found.path, FRONT_DOORS)
        ]
        self.assertNoProblems(problems, "nothing below the front doors imports them")

    def test_noCycleBetweenFolders(self):
        """
        No import cycle joins two folders or modules of the diagram: the
        graph of their imports (of C{dicomd/archive/} on C{dicomd/storage/},
        say) has no cycle.
        """
        graph: Dict[str, Set[str]] = {}
        example: Dict[Tuple[str, str], Import] = {}
        for found in self.tree.dicomdImports():
            source, target = self.tree.placeOf(found.path), self.tree.placeOf(found.target)
            if source is None or target is None or source == target:
                continue
            graph.setdefault(source, set()).add(target)
            example.setdefault((source, target), found)
        cycle = findCycle(graph)
        if cycle is not None:
            edges = ["%s -> %s: %s" % (a, b, example[a, b]) for a, b in zip(cycle, cycle[1:])]
            self.fail("an import cycle joins %s:\n  %s" % (" -> ".join(cycle), "\n  ".join(edges)))


class HelperTests(SynchronousTestCase):
    """
    The readers and the cycle finder these tests rely on, on made-up
    input, so that a rule cannot pass by reading nothing.
    """

    def test_layersOfADiagram(self):
        """
        L{readLayers} splits the diagram at its C{|} lines, reads the
        names before each description, and skips continuation lines.
        """
        text = (
            "# Title\n\n## Layers\n\ntext\n\n```\n"
            "  twisted/plugins/                   plugins\n"
            "  dicomd/cli/, tap.py                front doors,\n"
            "                                     and more\n"
            "          |\n"
            "  dicomd/ul/                         bottom\n"
            "```\n\n## Next\n"
        )
        self.assertEqual(
            readLayers(text),
            [("twisted/plugins/", "dicomd/cli/", "dicomd/tap.py"), ("dicomd/ul/",)],
        )

    def test_importsOfASource(self):
        """
        L{readImports} finds imports at any depth, resolves relative ones,
        and tells a submodule from a name.
        """
        modules = {"dicomd.a": "dicomd/a.py", "dicomd.pkg": "dicomd/pkg/__init__.py", "dicomd.pkg.b": "dicomd/pkg/b.py"}
        source = "import os\nfrom dicomd.pkg import b, NAME\n\ndef f():\n    from ..a import thing\n"
        self.assertEqual(
            readImports("dicomd/pkg/b.py", source, modules),
            [
                Import("dicomd/pkg/b.py", 1, "os", None, None),
                Import("dicomd/pkg/b.py", 2, "dicomd.pkg", "b", "dicomd/pkg/b.py"),
                Import("dicomd/pkg/b.py", 2, "dicomd.pkg", "NAME", "dicomd/pkg/__init__.py"),
                Import("dicomd/pkg/b.py", 5, "dicomd.a", "thing", "dicomd/a.py"),
            ],
        )

    def test_findCycle(self):
        """
        L{findCycle} returns a cycle, closed on its first node, or C{None}.
        """
        self.assertIsNone(findCycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}))
        self.assertEqual(findCycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertEqual(findCycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}), ["b", "c", "b"])
