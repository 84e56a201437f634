#!/bin/sh
# Install everything the test suite needs and run it.
#
#   sh tests/run.sh [trial arguments]
#
# Installs Debian's dcmtk, postgresql and orthanc when missing and we are root, creates .venv,
# installs dicomd with its test extras into it, runs the whole suite with
# trial and ends with a line "N passed, N failed".
set -eu
cd "$(dirname "$0")/.."

as_root() { [ "$(id -u)" = 0 ]; }

if ! [ -x /usr/bin/storescp ] || ! [ -x /usr/bin/dcmqrscp ]; then
    if as_root && command -v apt-get >/dev/null; then
        echo "Installing Debian's dcmtk for the interoperability tests..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null
    else
        echo "warning: DCMTK is not installed and we are not root: its interoperability tests will fail" >&2
    fi
fi

# Install a Debian package without starting its system service: a
# policy-rc.d that refuses every start, kept only for the install.
install_without_service() {
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if ! [ -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=yes
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    status=$?
    if [ -n "$own_policy" ]; then rm -f "$policy"; fi
    return $status
}

# The index tests run on PostgreSQL too: tests/postgres.py starts a
# throw-away server with the package's initdb and pg_ctl (the package's
# own cluster is not used, nor its service started).
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if as_root && command -v apt-get >/dev/null; then
        echo "Installing Debian's postgresql for the index tests..."
        install_without_service postgresql
    else
        echo "warning: PostgreSQL is not installed and we are not root: its index tests will fail" >&2
    fi
fi

# Orthanc is a forwarding destination in the tests, run by hand with a
# throw-away configuration; the package must not start its system service.
if ! [ -x /usr/sbin/Orthanc ]; then
    if as_root && command -v apt-get >/dev/null; then
        echo "Installing Debian's orthanc for the interoperability tests..."
        install_without_service orthanc
    else
        echo "warning: Orthanc is not installed and we are not root: its interoperability tests will be skipped" >&2
    fi
fi

if ! [ -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        if as_root && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv
            python3 -m venv .venv
        else
            echo "error: python3 -m venv failed; install python3-venv" >&2
            exit 2
        fi
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q '.[test]'
# pip builds in the source tree; its leftovers would shadow the installed
# metadata that tests/test_packaging.py reads.
rm -rf build dicomd.egg-info

# Tests import dicomd from this checkout, and so do the twistd and dicomd
# processes they start (tests/support.py puts the checkout first on their
# PYTHONPATH); tests/test_packaging.py checks the installed wheel.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec .venv/bin/python tests/summarize.py .venv/bin/trial --jobs=2 "${@:-tests}"
