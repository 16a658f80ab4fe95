/** A seeded PRNG (mulberry32): the same seed gives the same run. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function normal (rand: () => number, mean: number, sd: number): number {
  const u = 1 - rand()
  const v = rand()
  return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

export type Scenario = 'healthy' | 'hypertensive' | 'crisis-episodes' | 'tachycardia-episodes' | 'sustained-tachycardia' | 'night-bradycardia' | 'offline-6h' | 'clock-drift' | 'duplicate-resends'
export const SCENARIOS: Scenario[] = ['healthy', 'hypertensive', 'crisis-episodes', 'tachycardia-episodes', 'sustained-tachycardia', 'night-bradycardia', 'offline-6h', 'clock-drift', 'duplicate-resends']

export interface Person {
  restHr: number
  restSys: number
  restDia: number
  scenario: Scenario
}

export function makePerson (rand: () => number, scenario: Scenario): Person {
  const hypertensive = scenario === 'hypertensive'
  return {
    restHr: normal(rand, 70, 7),
    restSys: normal(rand, hypertensive ? 142 : 118, 8),
    restDia: normal(rand, hypertensive ? 90 : 76, 5),
    scenario,
  }
}

export interface SimReading { hr: number, sys: number, dia: number, activity: 'rest' | 'sleep' | 'light' | 'moderate', motion: boolean }

/**
 * One measurement of a person at time `t`: a circadian swing (lower at night), activity
 * episodes, measurement noise, occasional motion artefacts, and the person's scenario
 * (e.g. a hypertensive crisis every few minutes for the demo).
 */
export function measure (p: Person, t: number, rand: () => number, n: number): SimReading {
  const hour = new Date(t).getUTCHours() + new Date(t).getUTCMinutes() / 60
  const circadian = Math.sin(((hour - 9) / 24) * 2 * Math.PI) // peaks mid-afternoon
  const sleeping = hour < 6 || hour >= 23
  const r = rand()
  const activity: SimReading['activity'] = sleeping ? 'sleep' : r < 0.7 ? 'rest' : r < 0.93 ? 'light' : 'moderate'
  const exertion = activity === 'moderate' ? 1 : activity === 'light' ? 0.4 : 0
  let hr = p.restHr + 4 * circadian + 45 * exertion + normal(rand, 0, 3) - (sleeping ? 8 : 0)
  let sys = p.restSys + 6 * circadian + 20 * exertion + normal(rand, 0, 5) - (sleeping ? 10 : 0)
  let dia = p.restDia + 3 * circadian + 5 * exertion + normal(rand, 0, 3) - (sleeping ? 6 : 0)
  if (p.scenario === 'crisis-episodes' && n % 20 === 19) { sys = normal(rand, 192, 5); dia = normal(rand, 118, 4) }
  if (p.scenario === 'night-bradycardia' && hour >= 1 && hour < 5) hr = normal(rand, 37, 1.5)
  if (p.scenario === 'tachycardia-episodes' && n % 15 >= 12) hr = normal(rand, 132, 4)
  if (p.scenario === 'sustained-tachycardia') {
    // at rest throughout: normal, then 30 readings of tachycardia, a slow recovery just under
    // the threshold (118 bpm, inside the hysteresis margin), then clearly normal
    const phaseHr = n < 2 ? p.restHr : n < 32 ? 132 : n < 38 ? 118 : 78
    return { hr: Math.round(phaseHr), sys: Math.round(Math.min(sys, 135)), dia: Math.round(Math.min(dia, 85, sys - 15)), activity: 'rest', motion: false }
  }
  const motion = rand() < 0.02
  if (motion) hr += normal(rand, 0, 15) // motion artefact: noisy optical heart rate
  dia = Math.min(dia, sys - 15)
  return { hr: Math.round(hr), sys: Math.round(sys), dia: Math.round(dia), activity, motion }
}
