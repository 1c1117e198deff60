"""Flex Template entry point of the nightly job.

Dataflow's launcher VM runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile) with the
template parameters and the job's environment as flags:

    python app/flex_template/launcher.py --input=s3://BUCKET/recsys/events/ \
        --store=s3://BUCKET/recsys --k=100 \
        --redis_url_secret=projects/P/secrets/recsys-dev-redis-url/versions/latest \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://...

Secrets travel as Secret Manager version names, never as values (the values would show in the
job's options). This launcher reads them into the environment (REDIS_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY), turns s3_endpoint_url into AWS_ENDPOINT_URL_S3, and hands every other
flag unchanged to `batch.nightly.run(argv)`, which builds the pipeline here on the launcher VM.
Dataflow workers do not inherit this environment: `run` reads it while building the pipeline
and passes the values to the transforms that need them.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

METADATA_TOKEN_URL = (
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
)
SECRET_MANAGER_API = "https://secretmanager.googleapis.com"

# Template parameter -> environment variable that receives the secret's value.
SECRET_FLAGS = {
    "redis_url_secret": "REDIS_URL",
    "aws_access_key_id_secret": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key_secret": "AWS_SECRET_ACCESS_KEY",
}
# Template parameter -> environment variable that receives the value itself.
PLAIN_FLAGS = {"s3_endpoint_url": "AWS_ENDPOINT_URL_S3"}
GCS_ENDPOINT = "https://storage.googleapis.com"

log = logging.getLogger("recsys.flex_template")


class SecretAccessError(RuntimeError):
    """A secret could not be read; the message says what to grant or fix."""


def split_argv(argv: Sequence[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Separates the launcher's own flags from the pipeline's.

    Args:
      argv: command-line flags, `--name=value` or `--name value`.

    Returns:
      (secrets, plain, rest): environment variable -> secret version name, environment
      variable -> value, and the flags left for `batch.nightly.run`. Empty values are dropped.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in (*SECRET_FLAGS, *PLAIN_FLAGS):
        parser.add_argument(f"--{flag}", default="")
    known, rest = parser.parse_known_args(list(argv))
    secrets = {
        env: getattr(known, flag) for flag, env in SECRET_FLAGS.items() if getattr(known, flag)
    }
    plain = {env: getattr(known, flag) for flag, env in PLAIN_FLAGS.items() if getattr(known, flag)}
    return secrets, plain, rest


def access_token(metadata_url: str = METADATA_TOKEN_URL, timeout: float = 10.0) -> str:
    """Returns an OAuth access token of the VM's service account from the metadata server."""
    request = urllib.request.Request(metadata_url, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)["access_token"]


def access_secret(
    version_name: str, token: str, api_root: str = SECRET_MANAGER_API, timeout: float = 10.0
) -> str:
    """Reads one secret version through the Secret Manager REST API.

    Args:
      version_name: projects/P/secrets/S/versions/V.
      token: OAuth access token of a principal with secretmanager.versions.access on S.
      api_root: the API's base URL (a local server in tests).

    Returns:
      The secret's payload as text.
    """
    request = urllib.request.Request(
        f"{api_root}/v1/{version_name}:access", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)["payload"]["data"]
    except urllib.error.HTTPError as error:
        hint = {
            403: "grant roles/secretmanager.secretAccessor on that secret to the job's service "
            "account (terraform/modules/secrets, `accessors`)",
            404: "check the secret name, and that it has an enabled version "
            "(gcloud secrets versions list SECRET)",
        }.get(error.code, "see the Secret Manager error above")
        raise SecretAccessError(f"cannot read {version_name}: HTTP {error.code}; {hint}") from error
    return base64.b64decode(payload).decode("utf-8")


def resolve_environment(
    argv: Sequence[str],
    fetch: Callable[[str], str],
) -> tuple[dict[str, str], list[str]]:
    """Turns the launcher's flags into environment variables.

    Args:
      argv: the template's flags.
      fetch: reads a secret version name into its value.

    Returns:
      (environment, rest): the variables to set and the flags for `batch.nightly.run`.
    """
    secrets, environment, rest = split_argv(argv)
    for env, version_name in secrets.items():
        environment[env] = fetch(version_name)
    if environment.get("AWS_ENDPOINT_URL_S3", "").rstrip("/") == GCS_ENDPOINT:
        # Cloud Storage signs with the "auto" region and rejects boto3's default checksums.
        environment.setdefault("AWS_DEFAULT_REGION", "auto")
        environment.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        environment.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return environment, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Resolves secrets, exports them, and runs the nightly pipeline."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    token: list[str] = []

    def fetch(version_name: str) -> str:
        if not token:
            token.append(access_token())
        return access_secret(version_name, token[0])

    environment, rest = resolve_environment(argv, fetch)
    log.info("launcher: set %s from the template's parameters", sorted(environment))
    os.environ.update(environment)

    from batch.nightly import run  # imported late: heavy, and only needed on the launcher VM

    run(rest)


if __name__ == "__main__":
    main()
