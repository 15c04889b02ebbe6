/**
 * The bridge protocol, version 1: every message, param, result and event shape, the error codes, and hand-written
 * runtime validators for what the connector sends. PROTOCOL.md is the prose of this file; the golden examples in
 * tests/fixtures/bridge/ are checked against it by test/fixtures.test.mjs.
 */

export const PROTOCOL_VERSION = 1

// ---------------------------------------------------------------------------------------------------------------
// Wire shapes

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

export interface RequestMessage {
	id: string
	method: string
	params: JsonObject
}

export interface SuccessMessage {
	id: string
	result: unknown
}

export interface ErrorBody {
	code: ErrorCode
	message: string
	data?: unknown
}

export interface FailureMessage {
	id: string | null
	error: ErrorBody
}

export interface EventMessage {
	event: EventName
	session: string | null
	data: object
}

export type Message = RequestMessage | SuccessMessage | FailureMessage | EventMessage

// ---------------------------------------------------------------------------------------------------------------
// Errors

export const ERROR_CODES = [
	'parse_error',
	'invalid_request',
	'method_not_found',
	'invalid_params',
	'session_not_found',
	'session_exists',
	'not_connected',
	'pairing_not_ready',
	'already_paired',
	'timeout',
	'shutting_down',
	'internal'
] as const
export type ErrorCode = (typeof ERROR_CODES)[number]

/** An error that crosses the wire with its code: thrown by handlers, and raised for failed outgoing calls. */
export class RpcError extends Error {
	readonly code: ErrorCode | string
	readonly data?: unknown

	constructor(code: ErrorCode | string, message: string, data?: unknown) {
		super(message)
		this.name = 'RpcError'
		this.code = code
		this.data = data
	}

	toBody(): ErrorBody {
		const body: ErrorBody = { code: this.code as ErrorCode, message: this.message }
		if (this.data !== undefined) body.data = this.data
		return body
	}
}

export const invalidParams = (field: string, message: string): RpcError =>
	new RpcError('invalid_params', `${field}: ${message}`, { field })

// ---------------------------------------------------------------------------------------------------------------
// Connector -> bridge methods

export const SESSION_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/** a full jid: user part (may carry :device / _agent) @ server */
export const JID_RE = /^[^\s@]+@[a-z][a-z.]*$/
export const PHONE_RE = /^[0-9]{7,15}$/
export const PRESENCE_TYPES = ['available', 'unavailable', 'composing', 'recording', 'paused'] as const
export type PresenceType = (typeof PRESENCE_TYPES)[number]

export type SessionId = string
export type Jid = string

/** a WhatsApp message key as Baileys 7 uses it (protobuf MessageKey plus the v7 addressing fields) */
export interface WireMessageKey {
	remoteJid?: string | null
	fromMe?: boolean | null
	id?: string | null
	participant?: string | null
	remoteJidAlt?: string
	participantAlt?: string
	addressingMode?: string
	[extra: string]: unknown
}

export interface SessionConfig {
	browser?: [string, string, string]
	version?: [number, number, number]
	connectTimeoutMs?: number
	keepAliveIntervalMs?: number
	defaultQueryTimeoutMs?: number
	qrTimeoutMs?: number
}

export interface PingParams {}
export interface PingResult {
	pong: true
	sessions: number
	uptime_ms: number
}

export interface SessionStartParams {
	session: SessionId
	/** the creds object last saved with creds.save (BufferJSON form), or null for a new session */
	creds: JsonObject | null
	config?: SessionConfig
}
export interface SessionStartResult {
	session: SessionId
	generated_creds: boolean
}

export interface SessionParams {
	session: SessionId
}
export interface SessionStopResult {
	stopped: true
}
export interface SessionLogoutResult {
	logged_out: true
}

export interface RequestPairingCodeParams {
	session: SessionId
	phone: string
	code?: string
}
export interface RequestPairingCodeResult {
	code: string
}

export type ConnectionName = 'connecting' | 'open' | 'close'
export interface MeInfo {
	id: string
	lid: string | null
	name: string | null
}
export interface SessionListEntry {
	session: SessionId
	connection: ConnectionName
	has_qr: boolean
	me: MeInfo | null
	/** ms since epoch of the last frame received on the socket; null before the first */
	lastReceivedAt: number | null
	/** messages whose delivery receipt waits for the connector's receipts.release */
	heldReceipts: number
	/** redelivered messages answered from the decrypted-message buffer since the socket started */
	bufferHits: number
}
export interface SessionListResult {
	sessions: SessionListEntry[]
}

export interface QuotedRef {
	key: WireMessageKey
	/** proto.IMessage JSON; when absent the bridge fetches it with message.get */
	message?: JsonObject | null
}
export interface MessageSendParams {
	session: SessionId
	to: Jid
	/** a Baileys AnyMessageContent in BufferJSON form */
	content: JsonObject
	options?: {
		messageId?: string
		quoted?: QuotedRef
	}
}
export interface MessageSendResult {
	key: WireMessageKey
	messageTimestamp: number | string | null
}

export interface PresenceSendParams {
	session: SessionId
	type: PresenceType
	to?: Jid
}

export interface ReadSendParams {
	session: SessionId
	keys: WireMessageKey[]
}

export interface ReceiptsReleaseParams {
	session: SessionId
	/** WhatsApp message ids whose messages are durable (or will not be published) */
	ids: string[]
}
export interface ReceiptsReleaseResult {
	/** how many of the ids had a held receipt (0 when the socket is gone: WhatsApp delivers those again) */
	released: number
}

export type EmptyResult = Record<string, never>

export interface ConnectorMethods {
	ping: { params: PingParams; result: PingResult }
	'session.start': { params: SessionStartParams; result: SessionStartResult }
	'session.stop': { params: SessionParams; result: SessionStopResult }
	'session.logout': { params: SessionParams; result: SessionLogoutResult }
	'session.requestPairingCode': { params: RequestPairingCodeParams; result: RequestPairingCodeResult }
	'session.list': { params: PingParams; result: SessionListResult }
	'message.send': { params: MessageSendParams; result: MessageSendResult }
	'presence.send': { params: PresenceSendParams; result: EmptyResult }
	'read.send': { params: ReadSendParams; result: EmptyResult }
	'receipts.release': { params: ReceiptsReleaseParams; result: ReceiptsReleaseResult }
}
export type ConnectorMethod = keyof ConnectorMethods

// ---------------------------------------------------------------------------------------------------------------
// Bridge -> connector requests

export interface KeysGetParams {
	session: SessionId
	type: string
	ids: string[]
}
export interface KeysGetResult {
	values: { [id: string]: Json }
}
export interface KeysSetParams {
	session: SessionId
	data: { [type: string]: { [id: string]: Json } }
}
export interface CredsSaveParams {
	session: SessionId
	creds: JsonObject
}
export interface MessageGetParams {
	session: SessionId
	key: WireMessageKey
}
export interface MessageGetResult {
	message: JsonObject | null
}

export interface BridgeMethods {
	'keys.get': { params: KeysGetParams; result: KeysGetResult }
	'keys.set': { params: KeysSetParams; result: EmptyResult }
	'creds.save': { params: CredsSaveParams; result: EmptyResult }
	'message.get': { params: MessageGetParams; result: MessageGetResult }
}
export type BridgeMethod = keyof BridgeMethods

// ---------------------------------------------------------------------------------------------------------------
// Events

export interface BridgeReadyEvent {
	protocol: number
	bridge_version: string
	baileys_version: string
	node_version: string
	pid: number
}

export interface ConnectionUpdateEvent {
	connection?: ConnectionName
	qr?: string
	isNewLogin?: boolean
	receivedPendingNotifications?: boolean
	isOnline?: boolean
	statusCode?: number | null
	reason?: string
	requested?: boolean
	/** on close, false when the creds the socket last had could not be stored (the store holds older ones) */
	credsSaved?: boolean
	me?: MeInfo
}

export interface MessagesUpsertEvent {
	type: 'notify' | 'append'
	messages: JsonObject[]
}
export interface MessagesUpdateEvent {
	updates: { key: WireMessageKey; update: JsonObject }[]
}
export interface MessageReceiptUpdateEvent {
	updates: { key: WireMessageKey; receipt: JsonObject }[]
}
export interface MessagesReactionEvent {
	reactions: { key: WireMessageKey; reaction: JsonObject }[]
}
export type MessagesDeleteEvent = { keys: WireMessageKey[] } | { jid: string; all: true }
export interface LidMappingUpdateEvent {
	lid: string
	pn: string
}
export interface ContactsEvent {
	contacts: JsonObject[]
}
export interface MessagingHistorySetEvent {
	syncType: number | null
	progress: number | null
	isLatest: boolean | null
	chats: number
	contacts: number
	messages: number
	lidPnMappings: LidMappingUpdateEvent[]
}
export interface SessionErrorEvent {
	message: string
}

export interface BridgeEvents {
	'bridge.ready': BridgeReadyEvent
	'connection.update': ConnectionUpdateEvent
	'messages.upsert': MessagesUpsertEvent
	'messages.update': MessagesUpdateEvent
	'message-receipt.update': MessageReceiptUpdateEvent
	'messages.reaction': MessagesReactionEvent
	'messages.delete': MessagesDeleteEvent
	'lid-mapping.update': LidMappingUpdateEvent
	'contacts.upsert': ContactsEvent
	'contacts.update': ContactsEvent
	'messaging-history.set': MessagingHistorySetEvent
	'session.error': SessionErrorEvent
}
export type EventName = keyof BridgeEvents

// ---------------------------------------------------------------------------------------------------------------
// Validators. Each returns the typed value or throws RpcError('invalid_params', …, {field}) naming the first bad field.

type Obj = Record<string, unknown>

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

function obj(v: unknown, field: string): Obj {
	if (!isObject(v)) throw invalidParams(field, 'must be an object')
	return v
}

function str(o: Obj, name: string, path: string, opts: { optional?: boolean; re?: RegExp; what?: string } = {}): string | undefined {
	const v = o[name]
	const field = path ? `${path}.${name}` : name
	if (v === undefined && opts.optional) return undefined
	if (typeof v !== 'string' || v.length === 0) throw invalidParams(field, 'must be a non-empty string')
	if (opts.re && !opts.re.test(v)) throw invalidParams(field, `must be ${opts.what ?? `a string matching ${opts.re}`}`)
	return v
}

function posInt(o: Obj, name: string, path: string): number | undefined {
	const v = o[name]
	if (v === undefined) return undefined
	if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw invalidParams(`${path}.${name}`, 'must be a positive integer')
	return v
}

const sessionId = (p: Obj): string => str(p, 'session', '', { re: SESSION_ID_RE, what: 'a session id (^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$)' })!
const jid = (o: Obj, name: string, path = '', optional = false): string | undefined =>
	str(o, name, path, { re: JID_RE, what: 'a full jid (user@server)', optional })

export function validateMessageKey(v: unknown, field: string): WireMessageKey {
	const k = obj(v, field)
	str(k, 'remoteJid', field, { re: JID_RE, what: 'a full jid (user@server)' })
	str(k, 'id', field)
	if (k.fromMe !== undefined && k.fromMe !== null && typeof k.fromMe !== 'boolean') throw invalidParams(`${field}.fromMe`, 'must be a boolean')
	for (const name of ['participant', 'remoteJidAlt', 'participantAlt', 'addressingMode']) {
		if (k[name] !== undefined && k[name] !== null && typeof k[name] !== 'string') throw invalidParams(`${field}.${name}`, 'must be a string')
	}
	return k as WireMessageKey
}

function sessionConfig(v: unknown): SessionConfig | undefined {
	if (v === undefined || v === null) return undefined
	const c = obj(v, 'config')
	const out: SessionConfig = {}
	if (c.browser !== undefined) {
		if (!Array.isArray(c.browser) || c.browser.length !== 3 || !c.browser.every(s => typeof s === 'string' && s.length > 0)) {
			throw invalidParams('config.browser', 'must be [os, client, version] strings')
		}
		out.browser = c.browser as [string, string, string]
	}
	if (c.version !== undefined) {
		if (!Array.isArray(c.version) || c.version.length !== 3 || !c.version.every(n => Number.isSafeInteger(n) && (n as number) >= 0)) {
			throw invalidParams('config.version', 'must be [int, int, int]')
		}
		out.version = c.version as [number, number, number]
	}
	for (const name of ['connectTimeoutMs', 'keepAliveIntervalMs', 'defaultQueryTimeoutMs', 'qrTimeoutMs'] as const) {
		const n = posInt(c, name, 'config')
		if (n !== undefined) out[name] = n
	}
	return out
}

const validators: { [M in ConnectorMethod]: (p: Obj) => ConnectorMethods[M]['params'] } = {
	ping: () => ({}),
	'session.list': () => ({}),
	'session.start': p => {
		const session = sessionId(p)
		if (!('creds' in p)) throw invalidParams('creds', 'is required (null for a new session)')
		if (p.creds !== null && !isObject(p.creds)) throw invalidParams('creds', 'must be an object or null')
		const out: SessionStartParams = { session, creds: p.creds as JsonObject | null }
		const config = sessionConfig(p.config)
		if (config) out.config = config
		return out
	},
	'session.stop': p => ({ session: sessionId(p) }),
	'session.logout': p => ({ session: sessionId(p) }),
	'session.requestPairingCode': p => {
		const out: RequestPairingCodeParams = {
			session: sessionId(p),
			phone: str(p, 'phone', '', { re: PHONE_RE, what: 'digits only with country code (7 to 15 digits)' })!
		}
		if (p.code !== undefined && p.code !== null) {
			if (typeof p.code !== 'string' || p.code.length !== 8) throw invalidParams('code', 'must be exactly 8 characters')
			out.code = p.code
		}
		return out
	},
	'message.send': p => {
		const out: MessageSendParams = {
			session: sessionId(p),
			to: jid(p, 'to')!,
			content: obj(p.content, 'content') as JsonObject
		}
		if (p.options !== undefined && p.options !== null) {
			const o = obj(p.options, 'options')
			const options: NonNullable<MessageSendParams['options']> = {}
			const messageId = str(o, 'messageId', 'options', { optional: true })
			if (messageId !== undefined) options.messageId = messageId
			if (o.quoted !== undefined && o.quoted !== null) {
				const q = obj(o.quoted, 'options.quoted')
				const quoted: QuotedRef = { key: validateMessageKey(q.key, 'options.quoted.key') }
				if (q.message !== undefined && q.message !== null) quoted.message = obj(q.message, 'options.quoted.message') as JsonObject
				options.quoted = quoted
			}
			out.options = options
		}
		return out
	},
	'presence.send': p => {
		const session = sessionId(p)
		if (typeof p.type !== 'string' || !(PRESENCE_TYPES as readonly string[]).includes(p.type)) {
			throw invalidParams('type', `must be one of ${PRESENCE_TYPES.join(', ')}`)
		}
		const out: PresenceSendParams = { session, type: p.type as PresenceType }
		const to = jid(p, 'to', '', true)
		if (to !== undefined) out.to = to
		return out
	},
	'read.send': p => {
		const session = sessionId(p)
		if (!Array.isArray(p.keys) || p.keys.length === 0) throw invalidParams('keys', 'must be a non-empty array of message keys')
		return { session, keys: p.keys.map((k, i) => validateMessageKey(k, `keys[${i}]`)) }
	},
	'receipts.release': p => {
		const session = sessionId(p)
		if (!Array.isArray(p.ids) || p.ids.length === 0 || !p.ids.every(id => typeof id === 'string' && id.length > 0)) {
			throw invalidParams('ids', 'must be a non-empty array of message ids')
		}
		return { session, ids: p.ids as string[] }
	}
}

export const CONNECTOR_METHODS = Object.keys(validators) as ConnectorMethod[]

export const isConnectorMethod = (method: string): method is ConnectorMethod =>
	Object.prototype.hasOwnProperty.call(validators, method)

/** Validate the params of a connector -> bridge request; throws RpcError('invalid_params') with data.field. */
export function validateParams<M extends ConnectorMethod>(method: M, params: unknown): ConnectorMethods[M]['params'] {
	if (!isObject(params)) throw new RpcError('invalid_params', 'params must be an object', { field: 'params' })
	return validators[method](params)
}

// -- bridge -> connector requests and results (used by the bridge on answers, and by tests on fixtures)

const bridgeParamValidators: { [M in BridgeMethod]: (p: Obj) => BridgeMethods[M]['params'] } = {
	'keys.get': p => {
		const session = sessionId(p)
		const type = str(p, 'type', '')!
		if (!Array.isArray(p.ids) || !p.ids.every(i => typeof i === 'string')) throw invalidParams('ids', 'must be an array of strings')
		return { session, type, ids: p.ids as string[] }
	},
	'keys.set': p => {
		const session = sessionId(p)
		const data = obj(p.data, 'data')
		for (const [type, entries] of Object.entries(data)) obj(entries, `data.${type}`)
		return { session, data: data as KeysSetParams['data'] }
	},
	'creds.save': p => ({ session: sessionId(p), creds: obj(p.creds, 'creds') as JsonObject }),
	'message.get': p => ({ session: sessionId(p), key: validateMessageKey(p.key, 'key') })
}

export const BRIDGE_METHODS = Object.keys(bridgeParamValidators) as BridgeMethod[]

export function validateBridgeParams<M extends BridgeMethod>(method: M, params: unknown): BridgeMethods[M]['params'] {
	if (!isObject(params)) throw new RpcError('invalid_params', 'params must be an object', { field: 'params' })
	return bridgeParamValidators[method](params)
}

/** Check the connector's answer to a bridge request; a bad answer is an error inside Baileys like a store failure. */
export function validateBridgeResult<M extends BridgeMethod>(method: M, result: unknown): BridgeMethods[M]['result'] {
	const fail = (field: string, message: string): never => {
		throw new RpcError('invalid_result', `${method} answered with a bad result: ${field} ${message}`, { field })
	}
	if (!isObject(result)) return fail('result', 'must be an object')
	if (method === 'keys.get' && !isObject(result.values)) fail('values', 'must be an object')
	if (method === 'message.get' && result.message !== null && result.message !== undefined && !isObject(result.message)) {
		fail('message', 'must be an object or null')
	}
	return result as BridgeMethods[M]['result']
}

// -- events: the documented required fields (the bridge produces them; the test suite checks fixtures with this)

const EVENT_SHAPES: { [E in EventName]: (d: Obj) => string | undefined } = {
	'bridge.ready': d =>
		d.protocol === PROTOCOL_VERSION &&
		typeof d.bridge_version === 'string' &&
		typeof d.baileys_version === 'string' &&
		typeof d.node_version === 'string' &&
		Number.isInteger(d.pid)
			? undefined
			: 'protocol/bridge_version/baileys_version/node_version/pid',
	'connection.update': d => {
		if (d.connection !== undefined && !['connecting', 'open', 'close'].includes(d.connection as string)) return 'connection'
		if (d.qr !== undefined && typeof d.qr !== 'string') return 'qr'
		if (d.statusCode !== undefined && d.statusCode !== null && !Number.isInteger(d.statusCode)) return 'statusCode'
		if (d.connection === 'close' && !('statusCode' in d)) return 'statusCode'
		if (d.credsSaved !== undefined && typeof d.credsSaved !== 'boolean') return 'credsSaved'
		if (d.me !== undefined && (!isObject(d.me) || typeof d.me.id !== 'string')) return 'me'
		return undefined
	},
	'messages.upsert': d =>
		!['notify', 'append'].includes(d.type as string)
			? 'type'
			: !Array.isArray(d.messages) || !d.messages.every(m => isObject(m) && isObject(m.key))
				? 'messages'
				: undefined,
	'messages.update': d => (Array.isArray(d.updates) && d.updates.every(u => isObject(u) && isObject(u.key) && isObject(u.update)) ? undefined : 'updates'),
	'message-receipt.update': d =>
		Array.isArray(d.updates) && d.updates.every(u => isObject(u) && isObject(u.key) && isObject(u.receipt)) ? undefined : 'updates',
	'messages.reaction': d =>
		Array.isArray(d.reactions) && d.reactions.every(u => isObject(u) && isObject(u.key) && isObject(u.reaction)) ? undefined : 'reactions',
	'messages.delete': d => (Array.isArray(d.keys) || (typeof d.jid === 'string' && d.all === true) ? undefined : 'keys'),
	'lid-mapping.update': d => (typeof d.lid !== 'string' ? 'lid' : typeof d.pn !== 'string' ? 'pn' : undefined),
	'contacts.upsert': d => (Array.isArray(d.contacts) ? undefined : 'contacts'),
	'contacts.update': d => (Array.isArray(d.contacts) ? undefined : 'contacts'),
	'messaging-history.set': d =>
		['chats', 'contacts', 'messages'].find(k => !Number.isInteger(d[k])) ?? (Array.isArray(d.lidPnMappings) ? undefined : 'lidPnMappings'),
	'session.error': d => (typeof d.message === 'string' ? undefined : 'message')
}

export const EVENT_NAMES = Object.keys(EVENT_SHAPES) as EventName[]

/** Returns the first missing/bad field of an event's data, or undefined when it has the documented fields. */
export function checkEvent(event: string, session: unknown, data: unknown): string | undefined {
	if (!Object.prototype.hasOwnProperty.call(EVENT_SHAPES, event)) return 'event'
	if (event === 'bridge.ready' ? session !== null : typeof session !== 'string' || !SESSION_ID_RE.test(session)) return 'session'
	if (!isObject(data)) return 'data'
	return EVENT_SHAPES[event as EventName](data)
}

/** Classify one decoded line (PROTOCOL.md "Messages"); undefined when it is none of the shapes. */
export function classify(v: unknown): 'request' | 'response' | 'event' | undefined {
	if (!isObject(v)) return undefined
	if ('method' in v) {
		return typeof v.id === 'string' && typeof v.method === 'string' && (v.params === undefined || isObject(v.params)) ? 'request' : undefined
	}
	if ('result' in v) return typeof v.id === 'string' ? 'response' : undefined
	if ('error' in v) {
		const e = v.error
		return (typeof v.id === 'string' || v.id === null) && isObject(e) && typeof e.code === 'string' && typeof e.message === 'string'
			? 'response'
			: undefined
	}
	if ('event' in v) return typeof v.event === 'string' && (typeof v.session === 'string' || v.session === null) && isObject(v.data) ? 'event' : undefined
	return undefined
}
