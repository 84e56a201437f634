"""
Option groups the front doors share: DCMTK's TLS options, the transfer
syntax option families, DCMTK options known but refused
(L{UnsupportedOptions}), command files (C{@file}), and turning options into
endpoints and settings.
"""

import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple


from dicomd import endpoints as dicomdEndpoints
from dicomd.cli.options import CommandLine, Option, UsageError, generalOptions, string
from dicomd.tls.context import CRL_CHAIN, CRL_LEAF
from dicomd.tls.profiles import PROFILES, describeCipherSuites
from dicomd.tls.settings import VERIFY_NONE, VERIFY_OPTIONAL, VERIFY_REQUIRE, TLSSettings
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES

#: The two-letter suffixes of DCMTK's transfer syntax options with their
#: long names (minus the C{--prefer-}/C{--propose-} stem) and meanings.
TRANSFER_SYNTAX_OPTIONS: List[Tuple[str, str, str]] = [
    ("=", "uncompr", "explicit VR local byte order"),
    ("e", "little", "explicit VR little endian"),
    ("b", "big", "explicit VR big endian"),
    ("s", "lossless", "default JPEG lossless"),
    ("y", "jpeg8", "default JPEG lossy for 8 bit data"),
    ("x", "jpeg12", "default JPEG lossy for 12 bit data"),
    ("v", "j2k-lossless", "JPEG 2000 lossless"),
    ("w", "j2k-lossy", "JPEG 2000 lossy"),
    ("t", "jls-lossless", "JPEG-LS lossless"),
    ("u", "jls-lossy", "JPEG-LS lossy"),
    ("m", "mpeg2", "MPEG2 Main Profile @ Main Level"),
    ("h", "mpeg2-high", "MPEG2 Main Profile @ High Level"),
    ("n", "mpeg4", "MPEG4 AVC/H.264 High Profile / Level 4.1"),
    ("l", "mpeg4-bd", "MPEG4 AVC/H.264 BD-compatible HP / Level 4.1"),
    ("2", "mpeg4-2-2d", "MPEG4 AVC/H.264 HP / Level 4.2 for 2D videos"),
    ("3", "mpeg4-2-3d", "MPEG4 AVC/H.264 HP / Level 4.2 for 3D videos"),
    ("o", "mpeg4-2-st", "MPEG4 AVC/H.264 Stereo HP / Level 4.2"),
    ("4", "hevc", "HEVC H.265 Main Profile / Level 5.1"),
    ("5", "hevc10", "HEVC H.265 Main 10 Profile / Level 5.1"),
    ("r", "rle", "RLE lossless"),
    ("d", "deflated", "deflated explicit VR little endian"),
]


def preferredSyntaxOptions(prefix: str, stem: str, dest: str, verb: str) -> List[Option]:
    """
    C{+x=}, C{+xe}... (acceptor, C{prefix="+"}) or C{-x=}, C{-xe}...
    (requestor, C{prefix="-"}); each sets C{dest} to its key in
    L{ACCEPTOR_PREFERENCES}, such as C{"+xe"}.
    """
    return [
        Option((prefix + "x" + suffix, "--%s-%s" % (stem, name)), dest, "%s %s TS" % (verb, meaning), const="+x" + suffix)
        for suffix, name, meaning in TRANSFER_SYNTAX_OPTIONS
    ]


def preferredTransferSyntax(key: str) -> str:
    """
    The transfer syntax an option such as C{"+xe"} or C{"+xi"} puts first.
    """
    return ACCEPTOR_PREFERENCES[key][0]


def tlsOptions(server: bool) -> Tuple[str, List[Option]]:
    """
    DCMTK's "transport layer security (TLS) options" group, for an
    acceptor (C{server}) or a requestor, mapped onto L{TLSSettings} by
    L{tlsSettings}: keys, certificates, revocation lists, security
    profiles, cipher suites, DH parameters (acceptor), server name
    indication and peer authentication.  The seed options are not here
    (see L{tlsProfileOptions}).
    """
    options = [
        Option(("-tls", "--disable-tls"), "tls", "use normal TCP/IP connection (default)", const=None),
        Option(
            ("+tls", "--enable-tls"),
            "tls",
            "use authenticated secure TLS connection",
            (("p]rivate key file", string), ("c]ertificate file", string)),
        ),
        Option(("+ps", "--std-passwd"), "password", "prompt user to type password on stdin (default)", const=None),
        Option(("+pw", "--use-passwd"), "password", "use specified password", (("p]assword", string),)),
        Option(("-pw", "--null-passwd"), "password", "use empty string as password", const=""),
        Option(("-pem", "--pem-keys"), "der", "read keys and certificates as PEM file (default)", const=False),
        Option(("-der", "--der-keys"), "der", "read keys and certificates as DER file", const=True),
        Option(("+cf", "--add-cert-file"), "certFiles", "add certificate file to list of certificates", (("f]ilename", string),), append=True),
        Option(("+cd", "--add-cert-dir"), "certDirs", "add certificates in d to list of certificates", (("d]irectory", string),), append=True),
        Option(
            ("+crl", "--add-crl-file"),
            "crlFiles",
            "add certificate revocation list file (implies --enable-crl-vfy)",
            (("f]ilename", string),),
            append=True,
        ),
        Option(("+crv", "--enable-crl-vfy"), "crlCheck", "enable leaf CRL verification", const=CRL_LEAF),
        Option(("+cra", "--enable-crl-all"), "crlCheck", "enable full chain CRL verification", const=CRL_CHAIN),
    ]
    options += [
        Option(profile.options, "tlsProfile", profile.title, const=name) for name, profile in PROFILES.items()
    ]
    options += [
        Option(("+cc", "--list-ciphers"), "listCiphers", "show list of supported TLS ciphersuites and exit"),
        Option(
            ("+cs", "--cipher"),
            "cipherSuites",
            "add ciphersuite to list of negotiated suites (not with --profile-bcp195-ex)",
            (("c]iphersuite name", string),),
            append=True,
        ),
    ]
    if server:
        options += [
            Option(("+dp", "--dhparam"), "dhParameters", "read DH parameters for DH/DSS ciphersuites", (("f]ilename", string),)),
            Option(("--expect-sni",), "sni", "expect requests for server name s (SNI)", (("s]erver name", string),)),
        ]
    else:
        options += [
            Option(("--request-sni",), "sni", "request server name s (SNI)", (("s]erver name", string),)),
        ]
    options += [
        Option(("-rc", "--require-peer-cert"), "verify", "verify peer certificate, fail if absent (default)", const=VERIFY_REQUIRE),
    ]
    if server:
        options.append(Option(("-vc", "--verify-peer-cert"), "verify", "verify peer certificate if present", const=VERIFY_OPTIONAL))
    options.append(Option(("-ic", "--ignore-peer-cert"), "verify", "don't verify peer certificate", const=VERIFY_NONE))
    if not server:
        options.insert(2, Option(("+tla", "--anonymous-tls"), "tls", "use secure TLS connection without certificate", const=(None, None)))
    return ("transport layer security (TLS) options", options)


def tlsSettings(values: Dict) -> TLSSettings:
    """
    The L{TLSSettings} for parsed TLS options; C{values["tls"]} is set.
    """
    key, certificate = values["tls"]
    return TLSSettings(
        privateKey=key,
        certificate=certificate,
        trusted=values.get("certFiles") or [],
        trustedDirectories=values.get("certDirs") or [],
        verify=values.get("verify") or VERIFY_REQUIRE,
        password=values.get("password"),
        der=bool(values.get("der")),
        profile=values.get("tlsProfile") or "bcp195-nd",
        ciphers=list(values.get("cipherSuites") or []),
        dhParameters=values.get("dhParameters"),
        crls=list(values.get("crlFiles") or []),
        crlCheck=values.get("crlCheck"),
        sni=values.get("sni"),
    )


#: L{TLSSettings} field -> the DCMTK option that sets it, for messages.
TLS_OPTION_OF_SETTING = {
    "privateKey": "+tls (--enable-tls)",
    "certificate": "+tls (--enable-tls)",
    "trusted": "+cf (--add-cert-file)",
    "trustedDirectories": "+cd (--add-cert-dir)",
    "password": "+pw (--use-passwd)",
    "profile": "the security profile",
    "ciphers": "+cs (--cipher)",
    "dhParameters": "+dp (--dhparam)",
    "crls": "+crl (--add-crl-file)",
    "crlCheck": "+crv/+cra",
    "sni": "--expect-sni/--request-sni",
}


def tlsUsageError(error) -> UsageError:
    """
    A L{UsageError} for a L{dicomd.tls.TLSConfigurationError}, naming the
    DCMTK option at fault.
    """
    return UsageError("%s: %s" % (TLS_OPTION_OF_SETTING.get(getattr(error, "setting", None), "+tls (--enable-tls)"), error))


def clientEndpoint(reactor, values: Dict, host: str, port: int):
    """
    A client endpoint to C{host:port}: TCP, wrapped in TLS when C{+tls} or
    C{+tla} was given (with C{values["tlsOptions"]} when a front door's
    validation built them already); see L{dicomd.endpoints.clientEndpoint}.

    @raise UsageError: the TLS files cannot be used.
    """
    tls = None
    if values.get("tls"):
        tls = values.get("tlsOptions")
        if tls is None:
            try:
                tls = tlsSettings(values).certificateOptions(isServer=False)
            except ValueError as e:
                raise tlsUsageError(e)
    return dicomdEndpoints.clientEndpoint(reactor, host, port, tls, timeout=values.get("timeout") or 30)


def spelled(names: Sequence[str]) -> str:
    """
    C{"+II (--invent-instance)"}: an option's short and long spellings.
    """
    return names[0] if len(names) == 1 else "%s (%s)" % (names[0], names[-1])


class UnsupportedOptions:
    """
    DCMTK options a front door knows but does not honour.  Each parses,
    with its arguments, so that L{check} can refuse it with a usage error
    that names it and says why, instead of "unknown option".
    """

    def __init__(self):
        self._reasons: Dict[str, Tuple[Sequence[str], str]] = {}

    def option(self, names: Tuple[str, ...], meaning: str, why: str, arguments=()) -> Option:
        """
        Declare one refused option.

        @param meaning: what it does in DCMTK, for the help text.
        @param why: why dicomd refuses it.
        """
        option = Option(names, "unsupported " + names[-1], "%s (not supported: %s)" % (meaning, why), arguments)
        self._reasons[option.dest] = (names, why)
        return option

    def check(self, values: Dict) -> None:
        """
        @raise UsageError: a refused option was given.
        """
        for dest, (names, why) in self._reasons.items():
            if dest in values:
                raise UsageError("%s is not supported: %s" % (spelled(names), why))


_OPENSSL_SEEDS = "OpenSSL seeds its generator from the operating system; there is no seed file"


def frontDoorGeneralOptions(unsupported: UnsupportedOptions, extra: Sequence[Option] = (), logConfigAdvice: str = "") -> Tuple[str, List[Option]]:
    """
    DCMTK's general options as every front door takes them: the common
    ones, C{--arguments}, C{-lc} refused by name (oflog configuration
    files are not read), then C{extra}.

    @param logConfigAdvice: what to do instead of C{-lc}, after the
        advice every front door gives.
    """
    title, options = generalOptions()
    options = list(options)
    options.insert(2, Option(("--arguments",), "printArguments", "print expanded command line arguments"))
    options.append(
        unsupported.option(
            ("-lc", "--log-config"),
            "use config file f for the logger",
            "oflog configuration files are not read; choose the level with -q, -v, -d or -ll" + logConfigAdvice,
            (("f]ilename", string),),
        )
    )
    options.extend(extra)
    return title, options


def tlsOptionGroup(unsupported: UnsupportedOptions, *, server: bool) -> Tuple[str, List[Option]]:
    """
    The TLS options of a front door: every DCMTK option but the seed
    files maps onto L{dicomd.tls} (see L{tlsOptions} and docs/tls.md);
    those are refused through C{unsupported}.
    """
    title, options = tlsOptions(server=server)
    return title, list(options) + tlsProfileOptions(unsupported)


def tlsProfileOptions(unsupported: UnsupportedOptions) -> List[Option]:
    """
    The TLS options of DCMTK that dicomd refuses (through
    C{unsupported}): the random seed files.  Every other TLS option is in
    L{tlsOptions}.
    """
    return [
        unsupported.option(("+rs", "--seed"), "seed random generator with contents of f", _OPENSSL_SEEDS, (("f]ilename", string),)),
        unsupported.option(("+ws", "--write-seed"), "write back modified seed (only with --seed)", _OPENSSL_SEEDS),
        unsupported.option(
            ("+wf", "--write-seed-file"), "write modified seed to file f (only with --seed)", _OPENSSL_SEEDS, (("f]ilename", string),)
        ),
    ]


def listCiphers(stream=None) -> int:
    """
    C{+cc}: print the TLS cipher suites this OpenSSL supports and each
    security profile's; the exit status is 0.
    """
    stream = stream or sys.stdout
    stream.write(describeCipherSuites())
    stream.flush()
    return 0


def commandPreamble(values: Dict) -> Optional[int]:
    """
    What every front door does first: C{--arguments} prints the expanded
    command line, C{+cc} lists the cipher suites (and is all it does).

    @return: the exit status when the command is done (C{+cc}), else
        C{None}.
    """
    if values.get("printArguments"):
        arguments = values.get("expandedArguments") or []
        sys.stdout.write("expanded command line to %d arguments:\n%s\n" % (len(arguments), " ".join(arguments)))
        sys.stdout.flush()
    if values.get("listCiphers"):
        return listCiphers()
    return None


def serverPreamble(values: Dict, log, *, forks: bool = False) -> Optional[int]:
    """
    What the server front doors (storescp, qrscp) do before serving: the
    L{commandPreamble}, and C{--fork} and C{--single-process} explained.

    @param forks: the front door serves with worker processes on C{--fork}.

    @return: the exit status when the command is done (C{+cc}), else
        C{None}.
    """
    done = commandPreamble(values)
    if done is not None:
        return done
    if values.get("fork") and forks:
        log.info("--fork: {count} worker processes serve associations", count=forkedWorkers())
    elif values.get("fork"):
        log.warn("--fork: dicomd does not fork; associations already run concurrently on one reactor in one process")
    elif values.get("fork") is False:
        log.info("--single-process: dicomd always runs in one process, where associations are concurrent on one reactor")
    return None


def forkedWorkers() -> int:
    """
    How many worker processes C{--fork} starts: one per CPU.
    """
    return os.cpu_count() or 1


def expandCommandFiles(argv: Sequence[str]) -> List[str]:
    """
    Replace each C{@file} argument by the words of that file, as DCMTK's
    tools do: white space separates words except between double quotes,
    and a command file cannot name another one.

    @raise UsageError: a command file cannot be read or parsed.
    """
    expanded = []
    for arg in argv:
        if len(arg) < 2 or not arg.startswith("@"):
            expanded.append(arg)
            continue
        try:
            with open(arg[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UsageError("cannot read command file %s: %s" % (arg[1:], e.strerror))
        lexer = shlex.shlex(text, posix=True)
        lexer.whitespace_split = True
        lexer.quotes = '"'
        lexer.escape = ""
        lexer.commenters = ""
        try:
            expanded.extend(lexer)
        except ValueError as e:
            raise UsageError("command file %s: %s" % (arg[1:], e))
    return expanded


class CommandFileCommandLine(CommandLine):
    """
    A L{CommandLine} that expands DCMTK's C{@file} command files first and
    keeps the expanded arguments as C{values["expandedArguments"]}, for
    C{--arguments}.
    """

    def parse(self, argv):
        expanded = expandCommandFiles(argv)
        values = CommandLine.parse(self, expanded)
        values["expandedArguments"] = expanded
        return values
