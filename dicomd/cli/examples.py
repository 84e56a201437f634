"""
C{dicomd example-config}: print one of the example configuration files,
so that an installed package (which has no C{etc/}) can start from them:

    dicomd example-config dicomd.toml > /etc/dicomd/dicomd.toml

The files are the package's C{dicomd/examples/}, links to the checkout's
C{etc/}, which the wheel carries as files.
"""

import sys
from importlib import resources

from twisted.internet import defer

from dicomd.cli.options import CommandLine, Option, Parameter

#: The examples, by name, with what each is for.
EXAMPLES = {
    "dicomd.toml": "twistd dicomd --config: every key, with its default (the default example)",
    "dcmqrscp.cfg": "dicomd qrscp -c: an archive of three AEs, in DCMTK's format",
    "storescp-asconfig.cfg": "dicomd storescp -xf and twistd dicomd's profile key: association negotiation profiles",
    "dicomd.service": "a systemd unit running twistd dicomd",
}


def _name(text: str) -> str:
    if text not in EXAMPLES:
        raise ValueError("%r is not an example (choose one of %s)" % (text, ", ".join(EXAMPLES)))
    return text


_name.kind = "string"

COMMAND_LINE = CommandLine(
    "dicomd example-config",
    "print an example configuration file",
    [
        Parameter(
            "name",
            "the example to print (default: dicomd.toml), one of:"
            + "".join("\n%31s%-23s%s" % ("", name, description) for name, description in EXAMPLES.items()),
            _name,
            required=False,
        )
    ],
    [
        (
            "general options",
            [
                Option(("-h", "--help"), "help", "print this help text and exit"),
                Option(("--version",), "version", "print version information and exit"),
            ],
        )
    ],
)


def example(name: str) -> str:
    """
    The text of the example C{name}, one of L{EXAMPLES}.
    """
    return resources.files("dicomd").joinpath("examples", name).read_text(encoding="utf-8")


def run(reactor, values):
    """
    Print the example.

    @return: a L{Deferred} firing with the exit status, 0.
    """
    sys.stdout.write(example(values["name"] or "dicomd.toml"))
    sys.stdout.flush()
    return defer.succeed(0)
