"""Log-in timing: an unknown e-mail against a wrong password for a real account.

Both must answer after the same work (one argon2 verification), so the answer's
timing does not tell an attacker which addresses have accounts. Starts a private
PostgreSQL, migrates `gateway`, registers one account, then runs `log_in` with a
wrong password for that account and for an unknown address, interleaved (so load
on the machine hits both alike), and prints the median and p90 of each and their
ratio, which should be close to 1.
Run: .venv/bin/python benchmarks/bench_bad_input.py [--rounds N] [--time-cost T]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from apps.gateway import services
from apps.gateway.errors import InvalidCredentialsError
from apps.gateway.keys import SigningKeys
from apps.gateway.models import Role
from apps.gateway.passwords import Passwords
from chomik import migrating
from chomik.auth import generate_key_pair, key_id
from chomik.infra import private_cluster

PASSWORD = "benchmark password"
KNOWN = "known@bench.example"


def timer(
    session: Session, passwords: Passwords, issuer: services.TokenIssuer
) -> Callable[[str], float]:
    """A function timing one refused log-in for an address, in seconds."""

    def attempt(email: str) -> float:
        started = time.perf_counter()
        try:
            services.log_in(
                session, email=email, password="wrong password",
                passwords=passwords, issuer=issuer,
            )  # fmt: skip
        except InvalidCredentialsError:
            return time.perf_counter() - started
        raise SystemExit("a wrong password was accepted")

    return attempt


def summary(label: str, samples: list[float]) -> float:
    """Print median and p90 in milliseconds; return the median."""
    median = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10)[-1]
    print(f"{label:<22} {len(samples):>6} {median * 1000:>10.2f} {p90 * 1000:>10.2f}")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--time-cost", type=int, default=2)
    parser.add_argument("--memory-kib", type=int, default=32768)
    args = parser.parse_args()

    with private_cluster("chomik-bench-login-", durable=False) as cluster:
        cluster.create_databases(["chomik_gateway"])
        url = cluster.url("chomik_gateway")
        migrating.upgrade("gateway", url)
        engine = create_engine(url)
        try:
            with Session(engine) as session:
                return measure(session, args)
        finally:
            engine.dispose()


def measure(session: Session, args: argparse.Namespace) -> int:
    """Register the account, then time both kinds of refusal."""
    # Real-sized hashing (tens of ms), so the hash and not the noise is measured.
    passwords = Passwords(time_cost=args.time_cost, memory_kib=args.memory_kib)
    private, public = generate_key_pair()
    kid = key_id(public)
    keys = SigningKeys(private_pem=private, kid=kid, public_pems={kid: public})
    issuer = services.TokenIssuer(keys, 300, 3600)
    services.register_account(
        session, email=KNOWN, password=PASSWORD, name="Bench",
        role=Role.BUYER, passwords=passwords,
    )  # fmt: skip
    attempt = timer(session, passwords, issuer)
    attempt("nobody@bench.example")  # the dummy hash is made on first use
    unknown, wrong = [], []
    for _ in range(args.rounds):
        unknown.append(attempt("nobody@bench.example"))
        wrong.append(attempt(KNOWN))

    print(
        f"refused log-ins, argon2 time_cost={args.time_cost} "
        f"memory={args.memory_kib} KiB, interleaved"
    )
    print(f"{'case':<22} {'runs':>6} {'p50 ms':>10} {'p90 ms':>10}")
    unknown_median = summary("unknown e-mail", unknown)
    wrong_median = summary("wrong password", wrong)
    print(f"ratio unknown/wrong (p50): x{unknown_median / wrong_median:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
