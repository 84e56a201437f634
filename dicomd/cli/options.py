"""
DCMTK-style command lines for the C{dicomd} front doors.

DCMTK's tools take options in three forms (C{-aet NAME}, C{+xi},
C{--aetitle NAME}) that Twisted's L{twisted.python.usage} cannot express.
A L{CommandLine} is declared as groups of L{Option}s, like the manual pages
in C{../shared/spec/}; it parses an argument list into a plain dict, prints
help grouped the way DCMTK prints it, and reports every mistake with a
L{UsageError} naming the option.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


class UsageError(Exception):
    """
    A command line that cannot be run; the message names the culprit.
    """


class CannotStart(Exception):
    """
    A command line that is right, naming something that cannot be used
    (a directory, a configuration file): the command cannot start.  Unlike
    a L{UsageError}, the message is not followed by a pointer to the
    help, which would not help.

    @ivar status: the exit status, DCMTK's for that failure.
    """

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def integer(low: Optional[int] = None, high: Optional[int] = None) -> Callable[[str], int]:
    """
    A converter for integer arguments, optionally within C{low..high}.
    """

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("%r is not an integer" % (text,))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError("%d is not in %s..%s" % (value, "" if low is None else low, "" if high is None else high))
        return value

    convert.kind = "integer"
    return convert


def aeTitle(text: str) -> str:
    """
    A converter for AE titles (PS3.5: at most 16 characters, no backslash,
    no control characters).
    """
    if not 0 < len(text) <= 16 or not text.isascii() or "\\" in text or not text.isprintable():
        raise ValueError("%r is not an AE title (1 to 16 printable ASCII characters, no backslash)" % (text,))
    return text


aeTitle.kind = "string"


def string(text: str) -> str:
    return text


string.kind = "string"


@dataclass
class Option:
    """
    One command-line option.

    @ivar names: its spellings, short first (C{"-aet", "--aetitle"}).
    @ivar dest: the key it sets in the parsed dict.
    @ivar arguments: C{(name, converter)} for each argument it takes.
    @ivar const: the value it sets when it takes no argument.
    @ivar append: collect every use into a list instead of keeping the last.
    """

    names: Tuple[str, ...]
    dest: str
    help: str
    arguments: Sequence[Tuple[str, Callable[[str], Any]]] = ()
    const: Any = True
    append: bool = False

    def value(self, texts: List[str]):
        values = []
        for (name, convert), text in zip(self.arguments, texts):
            try:
                values.append(convert(text))
            except ValueError as e:
                raise UsageError("invalid value for %s: %s" % (self.names[-1], e))
        if not self.arguments:
            return self.const
        return values[0] if len(values) == 1 else tuple(values)


@dataclass
class Parameter:
    """
    A positional parameter, such as C{port} or C{dcmfile-in...}.
    """

    name: str
    help: str
    converter: Callable[[str], Any] = string
    required: bool = True
    repeated: bool = False


@dataclass
class CommandLine:
    """
    A DCMTK-style command line: positional parameters and grouped options.

    @ivar program: how it is invoked, such as C{"dicomd storescp"}, for the
        help and the messages.
    @ivar defaults: the parsed dict's value for each C{dest} not given.
    @ivar helpWithoutArguments: run without any argument, print the help
        and exit 0, as DCMTK's tools with required parameters do (storescp,
        whose port is optional, does too; dcmqrscp runs).
    """

    program: str
    description: str
    parameters: List[Parameter]
    groups: List[Tuple[str, List[Option]]]
    defaults: Dict[str, Any] = field(default_factory=dict)
    helpWithoutArguments: bool = False

    def __post_init__(self):
        self._byName = {}
        for _, options in self.groups:
            for option in options:
                for name in option.names:
                    if name in self._byName:
                        raise AssertionError("option %s declared twice" % (name,))
                    self._byName[name] = option

    def parse(self, argv: Sequence[str]) -> Dict[str, Any]:
        """
        Parse an argument list (without the program name).

        @return: C{dest -> value} for every option and parameter, defaults
            included; C{"help"} is C{True} when help was asked for.
        @raise UsageError: unknown option, missing or bad argument, missing
            or extra parameter.
        """
        values = dict(self.defaults)
        positional = []
        index = 0
        argv = list(argv)
        while index < len(argv):
            arg = argv[index]
            index += 1
            if arg == "--":
                positional.extend(argv[index:])
                break
            if len(arg) > 1 and arg[0] in "+-" and not _isNumber(arg):
                option = self._byName.get(arg)
                if option is None:
                    raise UsageError("unknown option %s" % (arg,))
                texts = argv[index:index + len(option.arguments)]
                if len(texts) < len(option.arguments):
                    raise UsageError(
                        "missing argument for %s (expects %s)" % (arg, " ".join(name for name, _ in option.arguments))
                    )
                index += len(option.arguments)
                value = option.value(texts)
                if option.append:
                    values[option.dest] = list(values.get(option.dest) or []) + [value]
                else:
                    values[option.dest] = value
            else:
                positional.append(arg)
        if values.get("help") or values.get("version"):
            return values
        self._assignParameters(positional, values)
        return values

    def _assignParameters(self, positional: List[str], values: Dict[str, Any]) -> None:
        for parameter in self.parameters:
            if parameter.repeated:
                taken, positional = positional, []
            else:
                taken, positional = positional[:1], positional[1:]
            if not taken:
                if parameter.required:
                    raise UsageError("missing parameter %s" % (parameter.name,))
                values.setdefault(parameter.name, [] if parameter.repeated else None)
                continue
            try:
                converted = [parameter.converter(text) for text in taken]
            except ValueError as e:
                raise UsageError("invalid parameter %s: %s" % (parameter.name, e))
            values[parameter.name] = converted if parameter.repeated else converted[0]
        if positional:
            raise UsageError("too many parameters: %s" % (" ".join(positional),))

    def help(self) -> str:
        """
        The help text, grouped as in DCMTK's manuals.
        """
        synopsis = " ".join(
            ("%s..." % p.name if p.repeated else p.name) if p.required else "[%s]" % p.name for p in self.parameters
        )
        lines = [
            "%s: %s" % (self.program, self.description),
            "usage: %s [options] %s" % (self.program, synopsis),
            "",
            "parameters:",
        ]
        for parameter in self.parameters:
            lines.append("  %-29s%s" % (parameter.name, parameter.help))
        for title, options in self.groups:
            lines.append("")
            lines.append(title + ":")
            for option in options:
                short = option.names[0] if len(option.names) > 1 else ""
                longName = option.names[-1]
                lines.append("  %-6s %-22s%s" % (short, longName, _argumentsText(option)))
                lines.append("  %-29s%s" % ("", option.help))
        return "\n".join(lines) + "\n"


def _argumentsText(option: Option) -> str:
    return " ".join("[%s]: %s" % (name, getattr(convert, "kind", "string")) for name, convert in option.arguments)


def _isNumber(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def versions(program: str) -> str:
    """
    What C{--version} prints: C{program} with dicomd's version, then the
    versions of what it runs on (pydicom, Twisted, Python), one a line.
    """
    import platform

    import pydicom
    from twisted import version as twistedVersion

    from dicomd import __version__

    return "%s %s\npydicom %s\nTwisted %s\nPython %s\n" % (
        program,
        __version__,
        pydicom.__version__,
        twistedVersion.short(),
        platform.python_version(),
    )


def logLevel(text: str) -> str:
    from dicomd.cli.logs import LEVELS

    if text not in LEVELS:
        raise ValueError("%r is not one of %s" % (text, ", ".join(LEVELS)))
    return text


logLevel.kind = "string constant"


def generalOptions() -> Tuple[str, List[Option]]:
    """
    The "general options" group every DCMTK tool has.
    """
    return (
        "general options",
        [
            Option(("-h", "--help"), "help", "print this help text and exit"),
            Option(("--version",), "version", "print version information and exit"),
            Option(("-q", "--quiet"), "quiet", "quiet mode, print no warnings and errors"),
            Option(("-v", "--verbose"), "verbose", "verbose mode, print processing details"),
            Option(("-d", "--debug"), "debug", "debug mode, print debug information"),
            Option(("-ll", "--log-level"), "logLevel", "use level l for the logger", (("l]evel", logLevel),)),
        ],
    )
