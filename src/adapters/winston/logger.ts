import winston from "winston";
import type { LogFields, Logger } from "../../ports/logger.port";

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const stampTime = winston.format((info) => {
  info.time = new Date().toISOString();
  return info;
});

/** One JSON object per line on stdout: {"level","message","time",...fields}. */
export function createLogger(level: LogLevel, stream: NodeJS.WritableStream = process.stdout): Logger {
  const logger = winston.createLogger({
    level,
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    format: winston.format.combine(stampTime(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream })],
  });
  const log = (lvl: LogLevel) => (message: string, fields?: LogFields) => {
    logger.log(lvl, message, fields ?? {});
  };
  return { error: log("error"), warn: log("warn"), info: log("info"), debug: log("debug") };
}
