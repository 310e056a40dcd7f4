import { claimedDeployment, type Deployment } from "../../domain/policy/deployment";
import { type PolicyStreamEnd, type ProxyRegistry, UnknownDeploymentError } from "../../domain/proxies/proxy-registry";
import { observeTransaction } from "../../domain/telemetry/transaction";
import { LeaksignalService, type UpdatePolicyResponse } from "../../generated/leaksignal";
import type { Logger } from "../../ports/logger.port";
import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import { bidiMethod, GrpcError, type GrpcMethod, GrpcStatus, unaryMethod } from "./grpc-call";

const END_MESSAGES: Record<PolicyStreamEnd, string> = {
  shutdown: "leakagent is shutting down; reconnect to another instance",
  deployment_removed: "the deployment was removed from the agent's configuration",
};

/** The `leaksignal.Leaksignal` service, keyed by `:path`. */
export function leaksignalMethods(
  registry: ProxyRegistry,
  telemetry: TelemetrySink,
  logger: Logger,
): ReadonlyMap<string, GrpcMethod> {
  // Only here do domain errors become gRPC statuses.
  const turnAway = (error: unknown, peerIp: string): GrpcError => {
    if (!(error instanceof UnknownDeploymentError)) throw error;
    telemetry.requestRejected("unknown_deployment");
    // The claimed name is the proxy's api key: never logged.
    logger.debug("proxy with unknown deployment turned away", { peer: peerIp });
    return new GrpcError(GrpcStatus.UNAUTHENTICATED, error.message);
  };

  const methods = [
    unaryMethod(LeaksignalService.matchData, (request, call) => {
      const deployment = registry.resolve(request);
      if (!deployment) throw turnAway(new UnknownDeploymentError(claimedDeployment(request)), call.peerIp);
      telemetry.transactionObserved(observeTransaction(deployment.name, request));
      return {};
    }),

    bidiMethod(LeaksignalService.updatePolicy, (call) => {
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
        closed() {
          unregister?.();
        },
      };
    }),

    unaryMethod(LeaksignalService.healthCheck, () => ({})),

    unaryMethod(LeaksignalService.ping, (request) => ({ timestamp: request.timestamp })),
  ];
  return new Map(methods.map((method) => [method.path, method]));
}

/** Both generations: 2022 proxies read the legacy fields 1-2, current ones `policy` (3). */
function policyResponse(deployment: Deployment): UpdatePolicyResponse {
  return {
    legacyPolicyId: deployment.policyId,
    legacyPolicy: deployment.policyText,
    policy: { policyId: deployment.policyId, policy: deployment.policyText },
    blockState: undefined,
  };
}
