"""docs/configuration.md: DeepDist's settings come from its arguments, else from spark.deepdist.* keys of the Spark
configuration, else from defaults that suit the master (fast: real SparkConfs without a SparkContext, real
shards)."""
import logging
import socket

import numpy as np
import pytest

import deepdist.driver
from deepdist import DeepDist
from deepdist.spark import CONF_KEYS, DEFAULTS, settings
from standalone import free_port_run

pyspark = pytest.importorskip("pyspark")


def spark_conf(master="spark://cluster:7077", **values):
    """A real SparkConf as a SparkContext on ``master`` holds it, with ``values`` set: what DeepDist reads."""
    conf = pyspark.SparkConf(loadDefaults=False).setMaster(master)
    for key, value in values.items():
        conf.set(key, value)
    return conf


def test_every_setting_has_a_spark_conf_key_and_a_default():
    assert set(CONF_KEYS) == set(DEFAULTS) == {"host", "advertise", "port", "shards", "timeout", "window",
                                               "check_finite", "encrypt", "wire_dtype"}
    assert all(key.startswith("spark.deepdist.") for key, _ in CONF_KEYS.values())


@pytest.mark.parametrize("master", ["local[2]", "local-cluster[2,1,1024]"])
def test_local_masters_stay_on_loopback(master):
    assert settings(spark_conf(master)) == {"host": "127.0.0.1", "advertise": "127.0.0.1", "port": 0,
                                             "shards": 2, "timeout": 60.0, "window": 32, "check_finite": True,
                                             "encrypt": False, "wire_dtype": None}
    assert settings(None)["host"] == "127.0.0.1"  # no Spark at all


def test_cluster_masters_listen_everywhere_and_advertise_the_driver_host():
    config = settings(spark_conf("yarn", **{"spark.driver.host": "driver.example"}))
    assert (config["host"], config["advertise"]) == ("0.0.0.0", "driver.example")
    config = settings(spark_conf("k8s://https://api:6443"))
    assert (config["host"], config["advertise"]) == ("0.0.0.0", socket.getfqdn())  # no spark.driver.host


def test_spark_conf_keys_are_read_and_typed():
    conf = {"spark.deepdist.bindAddress": "10.0.0.5", "spark.deepdist.advertiseAddress": "driver.svc",
            "spark.deepdist.port": "40000", "spark.deepdist.shards": "4", "spark.deepdist.timeout": "7.5",
            "spark.deepdist.window": "8", "spark.deepdist.checkFinite": "false",
            "spark.deepdist.encrypt": "true", "spark.deepdist.wireDtype": "float16"}
    assert settings(spark_conf(**conf)) == {"host": "10.0.0.5", "advertise": "driver.svc", "port": 40000,
                                             "shards": 4, "timeout": 7.5, "window": 8, "check_finite": False,
                                             "encrypt": True, "wire_dtype": "float16"}
    # A bind address without an advertised one: clients dial the bind address.
    assert settings(spark_conf(**{"spark.deepdist.bindAddress": "10.0.0.5"}))["advertise"] == "10.0.0.5"


def test_arguments_beat_spark_conf():
    conf = spark_conf(**{"spark.deepdist.shards": "4", "spark.deepdist.timeout": "7",
                         "spark.deepdist.checkFinite": "false", "spark.deepdist.advertiseAddress": "conf"})
    config = settings(conf, shards=3, timeout=2.0, check_finite=True, advertise="argument")
    assert (config["shards"], config["timeout"], config["check_finite"], config["advertise"]) == \
        (3, 2.0, True, "argument")


@pytest.mark.parametrize("key, value, message", [
    ("spark.deepdist.port", "http", "spark.deepdist.port must be an integer, got 'http'"),
    ("spark.deepdist.port", "70000", "spark.deepdist.port must be a port"),
    ("spark.deepdist.shards", "0", "spark.deepdist.shards must be at least 1"),
    ("spark.deepdist.timeout", "-1", "spark.deepdist.timeout must be seconds from 0.001 to 2.14748e"),
    ("spark.deepdist.timeout", "inf", "spark.deepdist.timeout must be seconds from 0.001"),  # ZeroMQ's int ms
    ("spark.deepdist.timeout", "3e6", "spark.deepdist.timeout must be seconds from 0.001"),
    ("spark.deepdist.window", "0", "spark.deepdist.window must be from 1 to 500"),
    ("spark.deepdist.window", "501", "spark.deepdist.window must be from 1 to 500"),
    ("spark.deepdist.checkFinite", "maybe", "spark.deepdist.checkFinite must be true or false"),
    ("spark.deepdist.encrypt", "curve", "spark.deepdist.encrypt must be true or false"),
    ("spark.deepdist.advertiseAddress", "0.0.0.0", "spark.deepdist.advertiseAddress must be an address clients"),
    ("spark.deepdist.wireDtype", "bfloat16", "spark.deepdist.wireDtype must be 'float16' (or unset"),
])
def test_bad_values_name_their_key(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        settings(spark_conf(**{key: value}))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="shards must be at least 1"):
        settings(None, shards=0)
    with pytest.raises(TypeError, match="unknown settings"):
        settings(None, bind="x")


@pytest.mark.parametrize("name, value, expected", [
    ("shards", "2", "a whole number"), ("shards", 2.5, "a whole number"), ("shards", True, "a whole number"),
    ("window", 2.5, "a whole number"), ("timeout", "5", "a number"), ("port", "x", "a whole number"),
    ("check_finite", "no", "True or False"), ("encrypt", 1, "True or False"), ("host", 127, "a string"),
    ("wire_dtype", np.float16, "a string")])
def test_arguments_of_the_wrong_type_name_the_argument(name, value, expected):
    with pytest.raises(TypeError, match=f"{name} must be {expected}, got {value!r}"):
        settings(None, **{name: value})
    assert settings(None, shards=np.int64(3), timeout=5)["shards"] == 3  # numpy integers and ints are numbers


def test_advertising_loopback_to_a_cluster_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="deepdist"):
        settings(spark_conf(**{"spark.driver.host": "localhost"}))
    assert "only executors on this machine can reach them" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepdist"):
        settings(spark_conf("local[2]"))
    assert not caplog.text


def test_deepdist_starts_its_shards_as_the_spark_conf_says(monkeypatch, no_leftover_shm):
    port = free_port_run(3)
    conf = spark_conf(**{"spark.deepdist.bindAddress": "127.0.0.1", "spark.deepdist.port": str(port),
                         "spark.deepdist.shards": "3", "spark.deepdist.timeout": "9",
                         "spark.deepdist.window": "4", "spark.deepdist.checkFinite": "false",
                         "spark.deepdist.encrypt": "true", "spark.deepdist.wireDtype": "float16"})
    # The configuration an active SparkContext with these keys would hand DeepDist.
    monkeypatch.setattr(deepdist.driver, "active_spark_conf", lambda: conf)
    model = {"w": np.zeros((30_000, 4), np.float32)}
    with DeepDist(model, progress=False) as dd:
        assert dd.address.endpoints == tuple(f"tcp://127.0.0.1:{port + i}" for i in range(3))
        assert dd.client_options == {"timeout": 9.0, "window": 4, "wire_dtype": "float16"}
        assert dd.server.check_finite is False
        assert dd.address.keys is not None  # encrypted: the address carries the clients' keys
    # Arguments win.
    with DeepDist(model, shards=1, timeout=1, progress=False, check_finite=True, encrypt=False) as dd:
        assert len(dd.address.endpoints) == 1 and dd.address.endpoints[0] == f"tcp://127.0.0.1:{port}"
        assert dd.client_options == {"timeout": 1, "window": 4, "wire_dtype": "float16"}
        assert dd.server.check_finite is True
        assert dd.address.keys is None
