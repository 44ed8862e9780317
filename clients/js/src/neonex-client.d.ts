// Types for neonex-client (src/neonex-client.js).

/** Any JSON value. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Error codes the hub sends in an `error` message. */
export type ServerErrorCode =
  | "invalid_message"
  | "unknown_type"
  | "bad_request"
  | "not_in_room"
  | "room_not_found"
  | "rate_limited"
  | "limit_exceeded"
  | "unsupported"
  | "unavailable"
  | "forbidden";

/** Codes of an `rpc_error` (the backend's answer to an rpc failed). */
export type RpcErrorCode = "timeout" | "unavailable" | "forbidden" | "bad_answer" | `status_${number}`;

/** Codes the client itself gives a failed request. */
export type ClientErrorCode = "timeout" | "queue_full" | "closed" | "disconnected";

export type NeonexErrorCode = ServerErrorCode | RpcErrorCode | ClientErrorCode;

/** A failed request. */
export class NeonexError extends Error {
  constructor(code: NeonexErrorCode, message?: string, details?: object);
  readonly name: "NeonexError";
  readonly code: NeonexErrorCode;
  /** The room of the request the error was attributed to, if any. */
  readonly room?: string | null;
  /** The kind of request the error was attributed to, if any. */
  readonly request?: "join" | "leave" | "publish" | "rpc" | "typing";
  /** The rpc's method, for an rpc_error. */
  readonly method?: string;
}

/** The WebSocket constructor the client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onopen: ((event: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface NeonexClientOptions {
  /** Development mode (no JWT secret on the hub): the user id, sent as `?user=`. */
  user?: string;
  /** A JWT, sent as `?token=`. */
  token?: string;
  /** Called (and awaited) before every connect attempt; a rejection counts as a failed attempt. */
  getToken?: () => string | Promise<string>;
  /** Default `globalThis.WebSocket`; in Node pass the `ws` package's export. */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols offered. Default `["neonex.v1"]`. */
  protocols?: string | string[];
  /** Backoff floor in ms. Default 500. */
  minReconnectDelay?: number;
  /** Backoff ceiling in ms. Default 20000. */
  maxReconnectDelay?: number;
  /** Least delay in ms before reconnecting after `server_shutdown`. Default 5000. */
  shutdownReconnectDelay?: number;
  /** A connect attempt without a welcome within this many ms fails. Default 10000. */
  connectTimeout?: number;
  /** Default timeout in ms of join, leave, publish and rpc. Default 10000. */
  timeout?: number;
  /** Send a ping after this many ms without hearing from the hub. Default 20000. */
  pingInterval?: number;
  /** Drop the connection when nothing is heard this many ms after a ping. Default 10000. */
  pongTimeout?: number;
  /** Most requests waiting for a connection. Default 256. */
  maxQueue?: number;
  /** Least ms between two `typing: true` for one room. Default 2000. */
  typingInterval?: number;
  /** Send `typing: false` after this many ms without a typing() call. Default 3000. */
  typingTimeout?: number;
}

export type Status = "disconnected" | "connecting" | "connected" | "closed";

export interface RequestOptions {
  /** Overrides the client's `timeout` for this request (ms). */
  timeout?: number;
}

// ---- server messages ----

export interface WelcomeMessage {
  type: "welcome";
  connection_id: string;
  user_id: string;
  /** What the backend's connect hook gave the connection. */
  data?: Json;
}
export interface JoinedMessage {
  type: "joined";
  room: string;
  count: number;
  epoch?: string;
  offset?: number;
  recovered?: boolean;
}
export interface LeftMessage {
  type: "left";
  room: string;
  count: number;
}
export interface UserJoinedMessage {
  type: "user_joined";
  room: string;
  user_id: string;
  count: number;
}
export interface UserLeftMessage {
  type: "user_left";
  room: string;
  user_id: string;
  count: number;
}
export interface ChatMessage {
  type: "chat_message";
  room: string;
  user_id: string;
  message?: string;
  data?: Json;
  /** Unix seconds. */
  time: number;
  /** With history on: the message's place in the room's stream. */
  offset?: number;
  /** Set when messages of a conflated room were skipped before this one. */
  conflated?: boolean;
}
export interface PublicationMessage {
  type: "publication";
  room: string;
  data: Json;
  time: number;
  offset?: number;
  conflated?: boolean;
}
export interface TypingMessage {
  type: "typing";
  room: string;
  user_id: string;
  typing: boolean;
}
export interface PresenceMessage {
  type: "presence";
  user_id: string;
  status: "online" | "offline";
  time: number;
}
export interface PongMessage {
  type: "pong";
}
export interface ErrorMessage {
  type: "error";
  code: ServerErrorCode;
  error: string;
}
export interface ServerShutdownMessage {
  type: "server_shutdown";
  message: string;
}
export interface RpcResultMessage {
  type: "rpc_result";
  id: string | number;
  data: Json;
}
export interface RpcErrorMessage {
  type: "rpc_error";
  id: string | number;
  code: RpcErrorCode;
}
export type ServerMessage =
  | WelcomeMessage
  | JoinedMessage
  | LeftMessage
  | UserJoinedMessage
  | UserLeftMessage
  | ChatMessage
  | PublicationMessage
  | TypingMessage
  | PresenceMessage
  | PongMessage
  | ErrorMessage
  | ServerShutdownMessage
  | RpcResultMessage
  | RpcErrorMessage;

// ---- results and events ----

export interface ConnectedInfo {
  connectionId: string;
  userId: string;
  data?: Json;
}
export interface JoinResult {
  room: string;
  count: number;
  epoch?: string;
  offset?: number;
  recovered?: boolean;
}
export interface LeaveResult {
  room: string;
  /** null when the client was not in the room any more (left while disconnected). */
  count: number | null;
}
export interface PublishContent {
  message?: string;
  data?: Json;
}

export interface NeonexEvents {
  status: { status: Status };
  /** attempt: 0 for a first connect, then 1, 2, ... since the last welcome; delay waited (ms). */
  connecting: { attempt: number; delay: number };
  connected: ConnectedInfo;
  disconnected: { code: number; reason: string; reconnect: boolean; delay: number | null };
  message: ChatMessage;
  publication: PublicationMessage;
  typing: TypingMessage;
  presence: PresenceMessage;
  user_joined: UserJoinedMessage;
  user_left: UserLeftMessage;
  joined: JoinedMessage;
  left: LeftMessage;
  /** Server errors not tied to a request. */
  error: NeonexError;
  server_shutdown: ServerShutdownMessage;
  recovered: { room: string; recovered: boolean; epoch: string | undefined; offset: number | undefined };
  gap: { room: string; expected: number; got: number };
  server_message: ServerMessage;
}

export class NeonexClient {
  constructor(url: string, options?: NeonexClientOptions);
  readonly url: string;
  readonly status: Status;
  readonly connectionId: string | null;
  readonly userId: string | null;
  /** Rooms the app joined, rejoined after every reconnect. */
  readonly rooms: string[];

  on<K extends keyof NeonexEvents>(name: K, fn: (payload: NeonexEvents[K]) => void): () => void;
  once<K extends keyof NeonexEvents>(name: K, fn: (payload: NeonexEvents[K]) => void): () => void;
  off<K extends keyof NeonexEvents>(name: K, fn: (payload: NeonexEvents[K]) => void): void;

  /** Resolves at the first welcome; rejects with `closed` if close() comes first. */
  connect(): Promise<ConnectedInfo>;
  /** Stops everything: status "closed", no reconnect, pending requests reject with `closed`. */
  close(): void;

  join(room: string, options?: RequestOptions): Promise<JoinResult>;
  leave(room: string, options?: RequestOptions): Promise<LeaveResult>;
  /** Resolves with the echoed chat_message. */
  publish(room: string, content: string | PublishContent, options?: RequestOptions): Promise<ChatMessage>;
  /** Asks the backend (`proxy.rpc_url`); resolves with its `data`. */
  rpc<T = Json>(method: string, data?: Json, options?: RequestOptions): Promise<T>;
  typing(room: string): void;
  stopTyping(room: string): void;
}
