"""Issue 23 (policy parts): conf cannot size a job past the caps or admission, nor name files
outside the app roots, nor load code; local: URIs are held to the app roots; admission counts
executor overheads; secrets in conf values and args are redacted where shown."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chidori.api.livy_common import LivySparkRequest
from chidori.api.spark_rest_messages import CreateSubmissionRequest, spec_from_request
from chidori.backends.base import LaunchRequest
from chidori.backends.spark import SparkBackend
from chidori.config import ClusterConfig
from chidori.domain.lifecycle import spec_demand
from chidori.domain.policy import conf_rule_errors, executor_extra_mib
from chidori.domain.records import Job
from chidori.domain.redact import REDACTED, redact_args, redact_conf, redact_text
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.ui.views import spec_json
from chidori.web.job_views import public_spec
from tests.server import REPO, ChidoriServer

PI = {"application": "examples/pi.py"}
TRAIN = {"kind": "python", "application": "examples/train.py"}
CAPS = {
    "max_driver_memory": "1g",
    "max_executor_memory": "1g",
    "max_executor_instances": 2,
    "max_executor_cores": 1,
    "max_driver_cores": 1,
}


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChidoriServer, str]]:
    """A server with tight caps (1g, 2 executors, 1 core), and a plain user's token."""
    env = {"CHIDORI_MAX_RUNNING_JOBS": "0"}  # nothing runs: these tests only submit
    with ChidoriServer(tmp_path_factory.mktemp("hardening-policy"), env=env) as server:
        with server.client() as admin:
            admin.post("/api/v1/admin/users", json={"name": "pat", "role": "user"})
            token = admin.post("/api/v1/tokens", json={"user": "pat"}).json()["token"]
            policy = admin.put("/api/v1/admin/policy", json=CAPS)
            assert policy.status_code == 200, policy.text
        yield server, token


def submit_as(server: ChidoriServer, token: str, body: dict[str, Any]) -> httpx.Response:
    with server.client(token) as client:
        return client.post("/api/v1/jobs", json=body)


def errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {f["field"]: f["message"] for f in response.json()["error"]["fields"]}


# -- defect 4: conf that sizes the job ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "instead"),
    [
        ("spark.executor.memory", "64g", "executor_memory"),
        ("spark.executor.instances", "500", "executor_instances"),
        ("spark.cores.max", "1000", "executor_instances and executor_cores"),
        ("spark.driver.memory", "64g", "driver_memory"),
        ("spark.driver.cores", "64", "driver_cores"),
        ("spark.executor.cores", "64", "executor_cores"),
        ("spark.dynamicAllocation.maxExecutors", "500", "executor_instances"),
        ("spark.dynamicAllocation.enabled", "true", "executor_instances"),
        ("SPARK.EXECUTOR.MEMORY", "64g", "executor_memory"),
    ],
)
def test_conf_cannot_size_a_job_past_the_caps(
    policed: tuple[ChidoriServer, str], key: str, value: str, instead: str
) -> None:
    server, token = policed
    refused = errors(submit_as(server, token, PI | {"conf": {key: value}}))
    assert refused[f"conf.{key}"].startswith(f"set {instead} instead")


def test_the_whole_reproduction_is_refused_for_users_and_admins(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, token = policed
    conf = {
        "spark.executor.memory": "64g",
        "spark.executor.instances": "500",
        "spark.cores.max": "1000",
    }
    for caller in (token, server.token):  # admins too: admission would not see it either
        refused = errors(submit_as(server, caller, PI | {"conf": conf}))
        assert {f"conf.{key}" for key in conf} <= set(refused)


@pytest.mark.parametrize(
    "key",
    [
        "spark.executor.memoryOverhead",
        "spark.executor.memoryOverheadFactor",
        "spark.executor.pyspark.memory",
        "spark.driver.memoryOverhead",
        "spark.driver.memoryOverheadFactor",
        "spark.yarn.executor.memoryOverhead",
        "spark.memory.offHeap.size",
        "Spark.Executor.MemoryOverhead",
    ],
)
def test_memory_beyond_the_heap_is_not_a_users_to_set(
    policed: tuple[ChidoriServer, str], key: str
) -> None:
    server, token = policed
    refused = errors(submit_as(server, token, PI | {"conf": {key: "8"}}))
    assert "may not be set" in refused[f"conf.{key}"]


def test_admission_counts_each_executors_default_overhead(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, token = policed
    body = PI | {"executor_instances": 2, "executor_memory": "1g", "driver_memory": "1g"}
    response = submit_as(server, token, body)
    assert response.status_code == 201, response.text
    # 1g driver + 2 x (1g + max(384m, 10 %)) executors.
    assert response.json()["demand"] == {"memory": f"{1024 + 2 * (1024 + 384)}m", "cores": 3}


def test_an_overhead_an_admin_sets_is_checked_and_counted(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, _ = policed
    conf = {"spark.executor.memoryOverhead": "2g", "spark.executor.pyspark.memory": "512m"}
    body = PI | {"executor_instances": 2, "executor_memory": "1g", "conf": conf}
    response = submit_as(server, server.token, body)
    assert response.status_code == 201, response.text
    assert response.json()["demand"]["memory"] == "8g"  # 1g + 2 x (1g + 2g + 512m)
    bad = {"conf": {"spark.executor.memoryOverhead": "lots"}}
    assert (
        "is not a size"
        in errors(submit_as(server, server.token, PI | bad))["conf.spark.executor.memoryOverhead"]
    )


def test_a_demand_too_big_to_record_is_refused_not_a_500(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, _ = policed
    body = PI | {"executor_instances": 2000, "executor_memory": "1t"}
    assert "too much" in errors(submit_as(server, server.token, body))["demand"]


def spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate(PI | fields)


def test_spec_demand_counts_what_spark_asks_for_per_executor() -> None:
    gib = 1024
    assert spec_demand(spec(executor_instances=0)).memory_mb == gib  # the driver alone
    assert spec_demand(spec(executor_instances=4, executor_memory="8g")).memory_mb == (
        gib + 4 * (8 * gib + int(0.1 * 8 * gib))
    )
    assert executor_extra_mib(spec(executor_memory="1g")) == 384
    assert executor_extra_mib(spec(conf={"spark.executor.memoryOverhead": "1g"})) == gib
    assert executor_extra_mib(spec(conf={"spark.executor.memoryOverhead": "700"})) == 700
    factor = {"spark.executor.memoryOverheadFactor": "0.5"}
    assert executor_extra_mib(spec(executor_memory="4g", conf=factor)) == 2 * gib
    off_heap = {"spark.memory.offHeap.enabled": "true", "spark.memory.offHeap.size": "1073741824"}
    assert executor_extra_mib(spec(conf=off_heap)) == 384 + gib
    disabled = {"spark.memory.offHeap.size": "1g"}
    assert executor_extra_mib(spec(conf=disabled)) == 384
    # A Python job's "executors" are no JVMs: nothing beyond what it asks for.
    python = JobSpec.model_validate(TRAIN | {"executor_instances": 3})
    assert spec_demand(python).memory_mb == 4 * gib


def test_the_spark_rest_and_livy_doors_map_conf_onto_the_spec_fields() -> None:
    request = CreateSubmissionRequest.model_validate(
        {
            "action": "CreateSubmissionRequest",
            "clientSparkVersion": "4.0.0",
            "appResource": "examples/pi.py",
            "mainClass": "org.apache.spark.deploy.PythonRunner",
            "appArgs": ["examples/pi.py"],
            "sparkProperties": {"spark.executor.memory": "2g", "spark.executor.instances": "3"},
        }
    )
    rest = spec_from_request(request, "local")
    assert (rest.executor_memory, rest.executor_instances) == ("2g", 3)
    assert conf_rule_errors(rest.conf) == []
    livy = LivySparkRequest.model_validate(
        {
            "executorMemory": "2g",
            "jars": ["a.jar"],
            "conf": {
                "spark.executor.memory": "8g",  # the request's field wins, as in Livy
                "spark.executor.instances": 4,
                "spark.jars": "b.jar, c.jar",
                "spark.sql.shuffle.partitions": "4",
            },
        }
    ).job_fields()
    assert livy["executor_memory"] == "2g" and livy["executor_instances"] == 4
    assert livy["jars"] == ["a.jar", "b.jar", "c.jar"]
    assert livy["conf"] == {"spark.sql.shuffle.partitions": "4"}


def test_livy_conf_is_held_to_the_caps(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed

    def batch(conf: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=server.url, auth=("pat", token), timeout=30) as livy:
            return livy.post("/batches", json={"file": "examples/pi.py", "conf": conf})

    too_big = batch({"spark.executor.memory": "64g", "spark.executor.instances": "500"})
    assert too_big.status_code == 400, too_big.text
    assert "executor_memory: at most 1g" in too_big.json()["msg"]
    assert "executor_instances: at most 2" in too_big.json()["msg"]
    cores = batch({"spark.cores.max": "1000"})
    assert cores.status_code == 400 and "conf.spark.cores.max" in cores.json()["msg"]
    fits = batch({"spark.executor.instances": "2"})
    assert fits.status_code == 201, fits.text
    with server.client(token) as client:
        job = client.get(f"/api/v1/jobs/{fits.json()['id']}").json()
    assert job["spec"]["executor_instances"] == 2 and job["spec"]["conf"] == {}


# -- defect 9: app roots and the denylist ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"application": "local:/etc/hostname"}, "application"),
        ({"application": "local:///etc/passwd"}, "application"),
        ({"application": f"local:{REPO}/examples/%2e%2e/../../etc/passwd"}, "application"),
        ({"application": "local://otherhost/etc/passwd"}, "application"),
        ({"jars": ["local:/etc/x.jar"]}, "jars[0]"),
        ({"py_files": ["local:/tmp/../etc/x.py"]}, "py_files[0]"),
        ({"archives": ["local:/etc/x.tgz#x"]}, "archives[0]"),
    ],
)
def test_local_uris_are_held_to_the_app_roots(
    policed: tuple[ChidoriServer, str], extra: dict[str, Any], field: str
) -> None:
    server, token = policed
    assert field in errors(submit_as(server, token, PI | extra))


def test_a_local_uri_under_an_app_root_is_accepted(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    response = submit_as(server, token, {"application": f"local:{REPO}/examples/pi.py"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("key", "instead"),
    [
        ("spark.jars", "jars"),
        ("spark.files", "files"),
        ("spark.submit.pyFiles", "py_files"),
        ("spark.archives", "archives"),
        ("spark.yarn.dist.files", "files"),
        ("spark.yarn.dist.forceDownloadSchemes", "jars, files, py_files or archives"),
    ],
)
def test_conf_file_lists_are_refused_with_a_pointer_to_the_checked_fields(
    policed: tuple[ChidoriServer, str], key: str, instead: str
) -> None:
    server, token = policed
    for caller in (token, server.token):
        refused = errors(submit_as(server, caller, PI | {"conf": {key: "/etc/passwd"}}))
        assert refused[f"conf.{key}"].startswith(f"set {instead} instead")


BUILTIN = [
    "spark.files.userClassPathFirst",
    "spark.executorEnv.JAVA_TOOL_OPTIONS",
    "spark.executorEnv.LD_PRELOAD",
    "spark.executorenv.ld_preload",
    "spark.executorEnv._JAVA_OPTIONS",
    "spark.executorEnv.JDK_JAVA_OPTIONS",
    "spark.executorEnv.PYTHONPATH",
    "spark.executorEnv.PYTHONSTARTUP",
    "spark.executorEnv.SPARK_CONF_DIR",
    "spark.executorEnv.HADOOP_USER_NAME",
    "spark.yarn.appMasterEnv.LD_PRELOAD",
    "spark.driver.resource.gpu.discoveryScript",
    "spark.executor.resource.gpu.discoveryScript",
    "spark.jars.repositories",
    "spark.jars.ivy",
    "spark.jars.ivySettings",
    "spark.driver.extraJavaOptions",
]


@pytest.mark.parametrize("key", BUILTIN)
def test_the_builtin_denylist_closes_the_gaps(policed: tuple[ChidoriServer, str], key: str) -> None:
    server, token = policed
    assert (
        "may not be set"
        in errors(submit_as(server, token, PI | {"conf": {key: "x"}}))[f"conf.{key}"]
    )


def test_an_admins_policy_cannot_loosen_the_builtin_denylist(
    policed: tuple[ChidoriServer, str],
) -> None:
    server, token = policed
    with server.client() as admin:
        before = admin.get("/api/v1/admin/policy").json()
        loose = admin.put("/api/v1/admin/policy", json=CAPS | {"forbidden_conf": []})
        assert loose.status_code == 200, loose.text
        try:
            refused = errors(submit_as(server, token, PI | {"conf": dict.fromkeys(BUILTIN, "x")}))
            assert {f"conf.{key}" for key in BUILTIN} <= set(refused)
            # What only the admin's list forbade is loosened; harmless variables stay allowed.
            conf = {"spark.eventLog.dir": "/tmp/x", "spark.executorEnv.PYTHONHASHSEED": "0"}
            assert submit_as(server, token, PI | {"conf": conf}).status_code == 201
        finally:
            assert admin.put("/api/v1/admin/policy", json=before).status_code == 200


# -- defect 9: redaction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("jdbc:postgresql://u:pgpw-1@h:5432/db", "pgpw-1"),
        ("jdbc:sqlserver://h:1433;databaseName=d;user=sa;password=sqlpw-2;encrypt=true", "sqlpw-2"),
        ("jdbc:mysql://h/db?user=a&password=mypw-3&ssl=1", "mypw-3"),
        ("https://a.blob.core.windows.net/c/f?sv=2022&ss=b&sig=sasSig%2B4%3D&se=2030", "sasSig"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=acctKey5+/==;X=y", "acctKey5"),
        ("Endpoint=sb://n.servicebus.windows.net/;SharedAccessKeyName=R;SharedAccessKey=s6", "s6"),
        ("SharedAccessSignature sr=x&sig=sasSig7&se=1&skn=p", "sasSig7"),
    ],
)  # fmt: skip
def test_secrets_inside_values_are_redacted(value: str, secret: str) -> None:
    assert secret not in redact_text(value) and REDACTED in redact_text(value)
    assert secret not in redact_conf({"spark.app.source": value})["spark.app.source"]


def test_keys_ending_in_pass_passwd_or_pwd_are_secret() -> None:
    conf = {
        "spark.executorEnv.DB_PASS": "a",
        "spark.executorEnv.MYSQL_PASSWD": "b",
        "spark.executorEnv.LDAP_PWD": "c",
        "spark.app.color": "blue",
        "spark.sql.warehouse.dir": "hdfs://nn:8020/warehouse",
    }
    shown = redact_conf(conf)
    assert all(shown[key] == REDACTED for key in list(conf)[:3])
    assert shown["spark.app.color"] == "blue"
    assert shown["spark.sql.warehouse.dir"] == "hdfs://nn:8020/warehouse"


def test_secrets_in_args_are_redacted_and_the_rest_kept() -> None:
    args = [
        "--password", "pw-1", "--token=tok-2", "db.pass=pw-3", "--api-key", "key-4",
        "jdbc:postgresql://u:pw-5@h/db", "--verbose", "input.txt", "k=v", "10",
    ]  # fmt: skip
    assert redact_args(args) == [
        "--password", REDACTED, f"--token={REDACTED}", f"db.pass={REDACTED}", "--api-key",
        REDACTED, f"jdbc:postgresql://u:{REDACTED}@h/db", "--verbose", "input.txt", "k=v", "10",
    ]  # fmt: skip


SECRETS = ["pw-a1b2", "tok-c3d4", "pgpw-e5f6", "sig-g7h8", "pass-i9j0"]


def secret_body() -> dict[str, Any]:
    return TRAIN | {
        "args": [
            "--password",
            SECRETS[0],
            f"--token={SECRETS[1]}",
            f"jdbc:postgresql://etl:{SECRETS[2]}@db/warehouse",
        ],
        "labels": {"case": "redaction"},
    }


def test_secrets_never_appear_in_api_answers(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    response = submit_as(server, token, secret_body())
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["spec"]["args"][0] == "--password" and job["spec"]["args"][1] == REDACTED
    conf = {
        "spark.hadoop.fs.azure.sas.fixed": f"sv=1&sig={SECRETS[3]}",
        "spark.executorEnv.DB_PASS": SECRETS[4],
    }
    spark = submit_as(server, token, PI | {"conf": conf})
    assert spark.status_code == 201, spark.text
    with server.client(token) as client:
        for path in (
            f"/api/v1/jobs/{job['id']}",
            f"/api/v1/jobs/{spark.json()['id']}",
            "/api/v1/jobs",
            f"/api/v1/jobs/{job['id']}/events",
        ):
            text = client.get(path).text
            assert not [s for s in SECRETS if s in text], path
        assert not [s for s in SECRETS if s in response.text + spark.text]


def job_of(spec: JobSpec) -> Job:
    stamp = datetime.now(UTC)
    return Job(1, "j", JobState.ADMITTED, spec, "u", None, stamp, stamp, stamp,
               None, None, 1, None, None, None, False)  # fmt: skip


def test_the_ui_shows_redacted_args_and_the_job_still_gets_the_real_ones(
    tmp_path: Path,
) -> None:
    job = job_of(JobSpec.model_validate(secret_body()))
    shown = spec_json(job) + str(public_spec(job))
    assert not [s for s in SECRETS[:3] if s in shown]
    backend = SparkBackend(ClusterConfig("local", "local", "local[*]"), {}, None)
    command = backend.driver_command(LaunchRequest(job, 1, tmp_path, lambda ref, _field: ref))
    assert command.argv[-4:] == secret_body()["args"]
    assert job.spec.args == secret_body()["args"]  # the stored spec is untouched


def test_caps_still_read_spec_fields(policed: tuple[ChidoriServer, str]) -> None:
    server, token = policed
    refused = errors(submit_as(server, token, PI | {"executor_memory": "2g"}))
    assert refused["executor_memory"] == "at most 1g allowed by policy"
