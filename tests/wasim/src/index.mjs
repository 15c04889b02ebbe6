// Programmatic entry point: the simulator plus its control API, as the CLI runs them.
import { startSimulator } from './server.mjs'
import { startControlServer } from './control.mjs'
import { silentLogger } from './log.mjs'

/** Hosts the simulator may listen on: it is test tooling and must never be reachable from elsewhere. */
export function isLoopback(/** @type {string} */ host) {
	return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host)
}

/**
 * @param {{ host?: string, port?: number, controlPort?: number, stateFile?: string, log?: import('./log.mjs').Logger }} [opts]
 */
export async function startWasim({ host = '127.0.0.1', port = 0, controlPort = 0, stateFile, log = silentLogger } = {}) {
	if (!isLoopback(host)) throw new Error(`refusing to listen on ${host}: wasim only listens on loopback`)
	const sim = await startSimulator({ host, port, stateFile, log })
	let control
	try {
		control = await startControlServer(sim, { host, port: controlPort })
	} catch (err) {
		await sim.close()
		throw err
	}
	return {
		sim,
		ready: { event: 'ready', ws_url: sim.wsUrl, control_url: sim.controlUrl, root_pub: sim.rootPub },
		/** Stop both servers and write the state file. */
		async close() {
			control.closeAllConnections()
			await new Promise(resolve => control.close(() => resolve(undefined)))
			await sim.close()
		}
	}
}

export { startSimulator } from './server.mjs'
export { startControlServer } from './control.mjs'
export { createLogger } from './log.mjs'
