"""A LeakSignal proxy stand-in that is not ours: Python grpcio with stubs generated from
proto/leaksignal.proto. It drives all four methods of the agent and prints one JSON line per
observation; the test (tests/e2e/grpc-python.test.ts) checks them and rewrites the agent's config
while the policy stream is open.

usage: leaksignal_client.py STUBS_DIR HOST:PORT API_KEY [reconnect]

With `reconnect`, it only holds a policy stream the way a proxy does: when the agent ends it, it
opens a new one, twice, and reports each stream's policy and end.
"""

import json
import sys
import threading

import grpc

MS = 1_000_000
START = 1_760_000_000_000 * MS


def emit(**fields):
    print(json.dumps(fields), flush=True)


def report(pb, api_key, status=b"201", body=None):
    """One transaction as a current proxy reports it: request and response components."""
    return pb.MatchDataRequest(
        api_key=api_key,
        policy_path="api.example.com/users",
        commit="python",
        ip="10.9.8.7",
        environment={"POD_NAME": "python-proxy"},
        connection_info={"listener_direction": "1", "source.address": "10.1.1.1:5000"},
        request=pb.Component(
            time_header_start=START,
            time_body_end=START + 3 * MS,
            body_size=0,
        ),
        response=pb.Component(
            time_header_start=START + 10 * MS,
            time_body_end=START + 13 * MS,
            body_size=777,
            header_matches=[pb.HeaderComponent(name=":status", header=status)],
            body_matches=[pb.Match(category_name="email", matcher_path="users[0].email")],
            category_performance_us={"email": 250},
            body=body,
        ),
    )


def outcome(step, call):
    try:
        call()
        emit(step=step, code="OK")
    except grpc.RpcError as error:
        emit(step=step, code=error.code().name, details=error.details())


def hold_policy_streams(pb, stub, api_key, streams):
    for number in range(1, streams + 1):
        finished = threading.Event()

        def requests():
            yield pb.UpdatePolicyRequest(api_key=api_key, commit="python", semver="0.0.0")
            finished.wait()

        try:
            for response in stub.UpdatePolicy(requests()):
                emit(step="policy", stream=number, policy_id=response.policy.policy_id)
            emit(step="policy_stream_end", stream=number, code="OK")
        except grpc.RpcError as error:
            emit(step="policy_stream_end", stream=number, code=error.code().name, details=error.details())
        finally:
            finished.set()


def main():
    stubs_dir, target, api_key = sys.argv[1:4]
    sys.path.insert(0, stubs_dir)
    import leaksignal_pb2 as pb
    import leaksignal_pb2_grpc as rpc

    # No proxy from the environment: the agent is on loopback.
    channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
    stub = rpc.LeaksignalStub(channel)
    if sys.argv[4:] == ["reconnect"]:
        hold_policy_streams(pb, stub, api_key, 2)
        channel.close()
        return
    raw = lambda path: channel.unary_unary(path, request_serializer=None, response_deserializer=None)

    pong = stub.Ping(pb.PingMessage(timestamp=1_733_000_000_123_456_789), timeout=5)
    emit(step="ping", timestamp=str(pong.timestamp))
    outcome("health_check", lambda: stub.HealthCheck(pb.HealthCheckMsg(), timeout=5))
    outcome("match_data", lambda: stub.MatchData(report(pb, api_key), timeout=5))
    outcome("match_data_unknown_key", lambda: stub.MatchData(report(pb, "intruder"), timeout=5))
    outcome("match_data_too_large", lambda: stub.MatchData(report(pb, api_key, body=b"x" * 100_000), timeout=5))
    outcome("match_data_undecodable", lambda: raw("/leaksignal.Leaksignal/MatchData")(b"\xff\xff\xff", timeout=5))
    outcome("unknown_method", lambda: raw("/leaksignal.Leaksignal/Teleport")(b"", timeout=5))

    turned_away = stub.UpdatePolicy(iter([pb.UpdatePolicyRequest(api_key="intruder", semver="0.0.0")]))
    outcome("update_policy_unknown_key", lambda: list(turned_away))

    # The policy stream a proxy keeps open: the request side stays open too, as a proxy's does.
    finished = threading.Event()

    def requests():
        yield pb.UpdatePolicyRequest(api_key=api_key, commit="python", semver="0.0.0")
        finished.wait()

    try:
        for count, response in enumerate(stub.UpdatePolicy(requests()), start=1):
            emit(
                step="policy",
                count=count,
                policy_id=response.policy.policy_id,
                policy=response.policy.policy,
                legacy_policy_id=response.legacy_policy_id,
                legacy_policy=response.legacy_policy,
            )
        emit(step="policy_stream_end", code="OK")
    except grpc.RpcError as error:
        emit(step="policy_stream_end", code=error.code().name, details=error.details())
    finally:
        finished.set()
        channel.close()


if __name__ == "__main__":
    main()
