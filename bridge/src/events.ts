/**
 * Baileys events → protocol events (PROTOCOL.md "Events"). Only serialization: names stay Baileys' own and nothing is
 * interpreted. Messages use protobufjs' JSON form through BufferJSON.replacer (bytes as base64 strings, 64-bit numbers
 * as strings, enums as numbers), except the message key, which is always copied as a plain object so the v7 fields protobuf drops
 * (remoteJidAlt, participantAlt, addressingMode, …) survive.
 */
import { BufferJSON, type BaileysEventMap, type ConnectionState, type WAMessage, type WAMessageKey } from 'baileys'
import type { BridgeEvents, ConnectionUpdateEvent, EventName, JsonObject, MeInfo, WireMessageKey } from './protocol.js'

type Obj = Record<string, unknown>

const isLong = (v: unknown): v is { toNumber(): number } =>
	typeof v === 'object' &&
	v !== null &&
	typeof (v as Obj).low === 'number' &&
	typeof (v as Obj).high === 'number' &&
	typeof (v as Obj).unsigned === 'boolean' &&
	typeof (v as Obj).toNumber === 'function'

/** protobufjs' JSON conversion, but with enums as numbers, as Baileys itself writes them into plain objects */
const PROTO_JSON_OPTIONS = { longs: String, enums: Number, bytes: String, json: true }

interface ProtoCtor {
	toObject(m: unknown, o: object): Obj
	encode: unknown
}
const protoCtor = (v: unknown): ProtoCtor | undefined => {
	if (typeof v !== 'object' || v === null) return undefined
	const c = (v as { constructor?: unknown }).constructor as Partial<ProtoCtor> | undefined
	return c && c !== Object && typeof c.toObject === 'function' && typeof c.encode === 'function' ? (c as ProtoCtor) : undefined
}

/**
 * BufferJSON.replacer, plus: protobuf objects in their JSON form with numeric enums (JSON.stringify has already called
 * toJSON, so the raw value is read from the holder), Longs and bigints as decimal strings.
 */
export function wireReplacer(this: unknown, key: string, value: unknown): unknown {
	const raw = (this as Obj | undefined)?.[key]
	const ctor = protoCtor(raw)
	if (ctor) return ctor.toObject(raw, PROTO_JSON_OPTIONS)
	if (typeof value === 'bigint') return value.toString()
	if (isLong(value)) return value.toString()
	return BufferJSON.replacer(key, value)
}

/** any value into plain JSON */
export function toWire<T = JsonObject>(value: unknown): T {
	if (value === undefined) return undefined as T
	return JSON.parse(JSON.stringify(value, wireReplacer)) as T
}

/** a message key as a plain object, keeping every field Baileys set (null/undefined left out) */
export function serializeKey(key: WAMessageKey | null | undefined): WireMessageKey {
	const out: Obj = {}
	if (!key) return out as WireMessageKey
	for (const [k, v] of Object.entries(key)) {
		if (v === undefined || v === null || typeof v === 'function') continue
		out[k] = v
	}
	return toWire<WireMessageKey>(out)
}

/**
 * A WAMessage in protobuf JSON form with a plain key. Own properties that are not protobuf fields (dropped by
 * toJSON) are kept too, so nothing Baileys attached is lost.
 */
export function serializeMessage(msg: WAMessage): JsonObject {
	const json = toWire<Obj>(msg) ?? {}
	for (const [k, v] of Object.entries(msg)) {
		if (k in json || v === undefined || v === null || typeof v === 'function') continue
		json[k] = toWire(v)
	}
	json.key = serializeKey(msg.key)
	return json as JsonObject
}

/** an object that carries a message key somewhere at its top (updates, receipts, reactions) */
function withKey<T extends { key: WAMessageKey }>(item: T): JsonObject {
	const out = toWire<Obj>(item)
	out.key = serializeKey(item.key)
	return out as JsonObject
}

export function meInfo(me: { id: string; lid?: string; name?: string } | undefined): MeInfo | undefined {
	if (!me?.id) return undefined
	return { id: me.id, lid: me.lid ?? null, name: me.name ?? null }
}

/** connection.update reduced as documented; `extra` carries what the session knows (requested, me) */
export function reduceConnectionUpdate(
	update: Partial<ConnectionState>,
	extra: { requested?: boolean; me?: MeInfo; credsSaved?: boolean } = {}
): ConnectionUpdateEvent {
	const out: ConnectionUpdateEvent = {}
	if (update.connection !== undefined) out.connection = update.connection
	if (update.qr !== undefined) out.qr = update.qr
	if (update.isNewLogin !== undefined) out.isNewLogin = update.isNewLogin
	if (update.receivedPendingNotifications !== undefined) out.receivedPendingNotifications = update.receivedPendingNotifications
	if (update.isOnline !== undefined) out.isOnline = update.isOnline
	if (update.connection === 'close' || update.lastDisconnect) {
		const error = update.lastDisconnect?.error as (Error & { output?: { statusCode?: number } }) | undefined
		const code = error?.output?.statusCode
		out.statusCode = typeof code === 'number' ? code : null
		if (error?.message) out.reason = error.message
	}
	if (update.connection === 'close') out.requested = extra.requested ?? false
	if (update.connection === 'close' && extra.credsSaved === false) out.credsSaved = false
	if (update.connection === 'open' && extra.me) out.me = extra.me
	return out
}

export interface WireEvent<E extends EventName = EventName> {
	event: E
	data: BridgeEvents[E]
}

/** Baileys event name → serializer; connection.update and creds.update are handled by the session itself. */
const TRANSLATORS: { [K in keyof BaileysEventMap]?: (payload: BaileysEventMap[K]) => WireEvent | undefined } = {
	'messages.upsert': p => ({
		event: 'messages.upsert',
		data: { type: p.type, messages: p.messages.map(serializeMessage) }
	}),
	'messages.update': p => ({
		event: 'messages.update',
		data: { updates: p.map(u => withKey(u) as BridgeEvents['messages.update']['updates'][number]) }
	}),
	'message-receipt.update': p => ({
		event: 'message-receipt.update',
		data: { updates: p.map(u => withKey(u) as BridgeEvents['message-receipt.update']['updates'][number]) }
	}),
	'messages.reaction': p => ({
		event: 'messages.reaction',
		data: { reactions: p.map(r => withKey(r) as BridgeEvents['messages.reaction']['reactions'][number]) }
	}),
	'messages.delete': p => ({
		event: 'messages.delete',
		data: 'keys' in p ? { keys: p.keys.map(serializeKey) } : { jid: p.jid, all: true }
	}),
	'lid-mapping.update': p => ({ event: 'lid-mapping.update', data: { lid: p.lid, pn: p.pn } }),
	'contacts.upsert': p => ({ event: 'contacts.upsert', data: { contacts: toWire<JsonObject[]>(p) } }),
	'contacts.update': p => ({ event: 'contacts.update', data: { contacts: toWire<JsonObject[]>(p) } }),
	'messaging-history.set': p => ({
		event: 'messaging-history.set',
		data: {
			syncType: p.syncType ?? null,
			progress: p.progress ?? null,
			isLatest: p.isLatest ?? null,
			chats: p.chats?.length ?? 0,
			contacts: p.contacts?.length ?? 0,
			messages: p.messages?.length ?? 0,
			lidPnMappings: (p.lidPnMappings ?? []).map(m => ({ lid: m.lid, pn: m.pn }))
		}
	})
}

export const FORWARDED_EVENTS = Object.keys(TRANSLATORS) as (keyof BaileysEventMap)[]

/** serialize one Baileys event; undefined for events the protocol does not carry */
export function translateEvent<K extends keyof BaileysEventMap>(name: K, payload: BaileysEventMap[K]): WireEvent | undefined {
	const t = TRANSLATORS[name] as ((p: BaileysEventMap[K]) => WireEvent | undefined) | undefined
	return t ? t(payload) : undefined
}
