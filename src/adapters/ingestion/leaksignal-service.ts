import { claimedDeployment, type Deployment } from "../../domain/policy/deployment";
import type { DeploymentSet } from "../../domain/policy/deployment-set";
import {
  type PolicyStreamEnd,
  PolicyStreamLimitError,
  type ProxyRegistry,
  UnknownDeploymentError,
} from "../../domain/proxies/proxy-registry";
import { observeTransaction } from "../../domain/telemetry/transaction";
import { LeaksignalDefinition, type MatchDataResponse, type UpdatePolicyResponse } from "../../generated/leaksignal";
import type { Logger } from "../../ports/logger.port";
import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import {
  bidiMethod,
  GrpcError,
  type GrpcMethod,
  type GrpcMethodDefinition,
  GrpcStatus,
  unaryMethod,
} from "./grpc-call";
import { type MatchDataReport, readMatchData } from "./match-data-reader";

const END_MESSAGES: Record<PolicyStreamEnd, string> = {
  shutdown: "leakagent is shutting down; reconnect to another instance",
  deployment_removed: "the deployment was removed from the agent's configuration",
  key_revoked: "the api key this proxy connected with no longer opens its deployment",
};

const NO_FIRST_MESSAGE = "UpdatePolicy needs a first message naming the deployment (api_key or deployment_name)";

const NO_BYTES = Buffer.alloc(0);

interface MessageType<T> {
  decode(bytes: Uint8Array): T;
  encode(message: T): { finish(): Uint8Array };
}

/** A method of the generated service description as the server dispatches it: by `:path`, with its codecs. */
function definition<Request, Response>(method: {
  readonly name: string;
  readonly requestType: MessageType<Request>;
  readonly responseType: MessageType<Response>;
}): GrpcMethodDefinition<Request, Response> {
  return {
    path: `/${LeaksignalDefinition.fullName}/${method.name}`,
    requestDeserialize: (bytes) => method.requestType.decode(bytes),
    responseSerialize: (message) => {
      const bytes = method.responseType.encode(message).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
  };
}

const SERVICE = {
  matchData: definition(LeaksignalDefinition.methods.matchData),
  updatePolicy: definition(LeaksignalDefinition.methods.updatePolicy),
  healthCheck: definition(LeaksignalDefinition.methods.healthCheck),
  ping: definition(LeaksignalDefinition.methods.ping),
};

/** UpdatePolicy's path: its streams never end by themselves, so a retiring connection ends them (ingestion-server.ts). */
export const POLICY_STREAM_PATH = SERVICE.updatePolicy.path;

/**
 * MatchData as the hot path serves it: requests decoded only as far as the metrics read them
 * (match-data-reader.ts), and the response, an empty message, never serialized.
 */
const MATCH_DATA: GrpcMethodDefinition<MatchDataReport, MatchDataResponse> = {
  ...SERVICE.matchData,
  requestDeserialize: readMatchData,
  responseSerialize: () => NO_BYTES,
};

/** The `leaksignal.Leaksignal` service, keyed by `:path`. */
export function leaksignalMethods(
  registry: ProxyRegistry,
  telemetry: TelemetrySink,
  logger: Logger,
): ReadonlyMap<string, GrpcMethod> {
  // Only here do domain errors become gRPC statuses.
  const turnAway = (error: unknown, peerIp: string): GrpcError => {
    if (error instanceof PolicyStreamLimitError) {
      telemetry.requestRejected("policy_stream_limit");
      logger.debug("policy stream refused: limit reached", { peer: peerIp, limit: error.limit });
      return new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, error.message);
    }
    if (!(error instanceof UnknownDeploymentError)) throw error;
    telemetry.requestRejected("unknown_deployment");
    // The claimed name is the proxy's api key: never logged.
    logger.debug("proxy with unknown deployment turned away", { peer: peerIp });
    return new GrpcError(GrpcStatus.UNAUTHENTICATED, error.message);
  };

  // A proxy presents the same credential on every report of its connection; resolving one costs a
  // SHA-256 (deployment-set.ts), so it is done once per connection and configuration. The cached
  // credential is only ever compared with what the same connection presented before.
  const resolved = new WeakMap<object, { credential: string; deployments: DeploymentSet; deployment: Deployment }>();
  const resolve = (request: MatchDataReport, connection: object | undefined): Deployment | undefined => {
    const credential = claimedDeployment(request);
    const deployments = registry.current;
    const known = connection && resolved.get(connection);
    if (known && known.credential === credential && known.deployments === deployments) return known.deployment;
    const deployment = registry.resolve(request);
    if (deployment && connection) resolved.set(connection, { credential, deployments, deployment });
    return deployment;
  };

  const methods = [
    unaryMethod(MATCH_DATA, (request, call) => {
      const deployment = resolve(request, call.connection);
      if (!deployment) throw turnAway(new UnknownDeploymentError(claimedDeployment(request)), call.peerIp);
      telemetry.transactionObserved(observeTransaction(deployment.name, request));
      return {};
    }),

    bidiMethod(UPDATE_POLICY, (call) => {
      let unregister: (() => void) | undefined;
      return {
        message(request) {
          // The first message identifies the proxy; later ones change nothing.
          if (unregister || call.signal.aborted) return;
          try {
            unregister = registry.connect(request, call.peerIp, {
              send: (deployment) => call.send(policyResponse(deployment)),
              end: (reason) => call.finish(GrpcStatus.UNAVAILABLE, END_MESSAGES[reason]),
            });
          } catch (error) {
            const status = turnAway(error, call.peerIp);
            call.finish(status.code, status.message);
          }
        },
        halfClosed() {
          // Without a first message the stream names no deployment and would wait for nothing until the
          // client goes. (A proxy that half-closes after it, the usual case, keeps its stream.)
          if (!unregister) call.reject("malformed", GrpcStatus.INVALID_ARGUMENT, NO_FIRST_MESSAGE);
        },
        closed() {
          unregister?.();
        },
      };
    }),

    unaryMethod(SERVICE.healthCheck, () => ({})),

    unaryMethod(SERVICE.ping, (request) => ({ timestamp: request.timestamp })),
  ];
  return new Map(methods.map((method) => [method.path, method]));
}

/** Both generations: 2022 proxies read the legacy fields 1-2, current ones `policy` (3). */
function policyResponse(deployment: Deployment): UpdatePolicyResponse {
  let response = RESPONSES.get(deployment);
  if (response === undefined) {
    response = {
      legacyPolicyId: deployment.policyId,
      legacyPolicy: deployment.policyText,
      policy: { policyId: deployment.policyId, policy: deployment.policyText },
      blockState: undefined,
    };
    RESPONSES.set(deployment, response);
  }
  return response;
}

// A policy change goes to every connected proxy of the deployment at once: it is encoded once, not per
// stream. Deployments are immutable (a change is a new object), so their responses can be kept by identity.
const RESPONSES = new WeakMap<Deployment, UpdatePolicyResponse>();
const ENCODED = new WeakMap<UpdatePolicyResponse, Buffer>();
const UPDATE_POLICY: typeof SERVICE.updatePolicy = {
  ...SERVICE.updatePolicy,
  responseSerialize(response) {
    let encoded = ENCODED.get(response);
    if (encoded === undefined) {
      encoded = SERVICE.updatePolicy.responseSerialize(response);
      ENCODED.set(response, encoded);
    }
    return encoded;
  },
};
