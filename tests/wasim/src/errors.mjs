// Errors that the control API turns into {"error": {code, message}} with an HTTP status.

export class SimError extends Error {
	/**
	 * @param {number} status HTTP status for the control API
	 * @param {string} code machine-readable code, e.g. "not_connected"
	 * @param {string} message
	 */
	constructor(status, code, message) {
		super(message)
		this.status = status
		this.code = code
	}
}

export const badRequest = (/** @type {string} */ message) => new SimError(400, 'bad_request', message)
export const notFound = (/** @type {string} */ message) => new SimError(404, 'not_found', message)
export const notConnected = (/** @type {string} */ message) => new SimError(409, 'not_connected', message)
export const conflict = (/** @type {string} */ message) => new SimError(409, 'conflict', message)
