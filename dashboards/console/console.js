/* vitalmesh web console: the shell (sign-in, language, API, charts), no framework, uPlot for charts. The views are in views.js. */
'use strict'
const $ = (id) => document.getElementById(id)
const t = (key, vars) => I18N.t(key, vars)
const state = { key: sessionStorage.getItem('vitalmesh.key'), me: null, ws: null }

async function api (path, opts = {}) {
  const json = opts.body !== undefined && typeof opts.body !== 'string' ? JSON.stringify(opts.body) : opts.body
  const type = opts.type ?? (json !== undefined ? 'application/json' : undefined)
  const res = await fetch(path, { method: opts.method, body: json, headers: { authorization: `Bearer ${state.key}`, ...(type ? { 'content-type': type } : {}) } })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw Object.assign(new Error(body.message || `HTTP ${res.status}`), { status: res.status, code: body.code })
  return body
}

/** An element with text and attributes; children appended. */
function h (tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue
    if (k === 'text') e.textContent = v
    else if (k === 'class') e.className = v
    else if (k.startsWith('on')) e[k] = v
    else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-(\w)/g, (_m, c) => c.toUpperCase())] = v
    else e.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children) if (c != null) e.append(c)
  return e
}

function live (onMessage) {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/live`)
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', key: state.key }))
  ws.onmessage = (e) => onMessage(JSON.parse(e.data), ws)
  ws.onclose = () => { const s = $('live-state'); if (s) s.textContent = t('live.off') }
  state.ws = ws
  return ws
}

const charts = []
/** A uPlot chart as wide as its container (phones too), times in the person's time zone and locale. */
function chart (el, title, series, data, height = 220) {
  const width = Math.max(260, el.clientWidth || 900)
  const u = new uPlot({
    title,
    width,
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), I18N.timeZone),
    scales: { x: { time: true } },
    axes: [{ values: (_u, splits, _ax, _space, incr) => splits.map((v) => I18N.axis(v * 1000, incr)) }, { values: (_u, splits) => splits.map((v) => I18N.num(v)) }],
    series: [{ label: t('chart.time'), value: (_u, v) => (v == null ? '–' : I18N.dateTime(v * 1000)) }, ...series],
  }, data, el)
  charts.push([u, el])
  return u
}
window.addEventListener('resize', () => { for (const [u, el] of charts) u.setSize({ width: Math.max(260, el.clientWidth), height: u.height }) })

const dashed = (label, stroke, dash = [6, 6]) => ({ label, stroke, dash, width: 1, points: { show: false } })
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 }
const SEVERITY_COLOR = { critical: '#b91c1c', warning: '#b45309' }

/** Does a rule set's audience include this resident? (the engine's own test, on the profile the console has) */
function appliesTo (audience, profile) {
  if (!audience || audience.kind === 'all') return true
  if (audience.kind === 'resident') return audience.residentId === profile.id
  if (audience.kind === 'cohort') {
    const age = profile.birthYear ? new Date().getFullYear() - profile.birthYear : null
    if (audience.ageMin != null && (age == null || age < audience.ageMin)) return false
    if (audience.ageMax != null && (age == null || age >= audience.ageMax)) return false
    if (audience.conditions && !audience.conditions.some((c) => (profile.conditions || []).includes(c))) return false
    if (audience.regions && !audience.regions.includes(profile.region)) return false
    return true
  }
  return false
}

/**
 * The lines to draw: from each rule set in force for the resident, the lowest classification
 * category that raises a warning and the one that raises a critical (their SBP and DBP lower
 * bounds), and heart-rate thresholds of threshold and sustained rules that warn or are critical.
 */
function thresholdLines (ruleSets, profile) {
  const lines = { sys: [], dia: [], hr: [] }
  const seen = new Set()
  const add = (metric, line) => {
    const k = `${metric}|${line.ruleSet}|${line.op}|${line.value}|${line.severity}`
    if (!seen.has(k)) { seen.add(k); lines[metric].push(line) }
  }
  for (const rs of ruleSets) {
    if (!appliesTo(rs.audience, profile)) continue
    for (const r of rs.rules) {
      if (r.kind === 'classification') {
        for (const severity of ['warning', 'critical']) {
          const cat = r.categories.find((c) => r.alertOn[c.id] === severity)
          if (!cat) continue
          for (const metric of ['sys', 'dia']) if (cat[metric]) add(metric, { ruleSet: rs.id, version: rs.version, severity, op: cat[metric].op, value: cat[metric].value, category: I18N.text(cat.title) || cat.id })
        }
      }
      if ((r.kind === 'threshold' || r.kind === 'sustained') && (r.severity === 'warning' || r.severity === 'critical')) {
        for (const c of r.when) if (c.metric === 'hr' && c.op !== 'between') add('hr', { ruleSet: rs.id, version: rs.version, severity: r.severity, op: c.op, value: c.value })
      }
    }
  }
  return lines
}

const lineLabel = (metric, l) => t('threshold.label', { ruleSet: l.ruleSet, severity: t(`sev.${l.severity}`), metric: t(`metric.${metric}`), op: l.op, value: t(metric === 'hr' ? 'unit.bpm' : 'unit.mmHg', { v: I18N.num(l.value) }) })

/** The heart-rate and blood-pressure charts of one resident, with the thresholds in force for them; returns `add(reading)` and `redraw()`. */
function vitalsCharts (hrEl, bpEl, listEl, readings, lines) {
  const hr = { t: [], v: [] }; const bp = { t: [], s: [], d: [] }
  const add = (r) => {
    const ts = r.ts / 1000
    if (r.hr != null) { hr.t.push(ts); hr.v.push(r.hr) }
    if (r.sys != null) { bp.t.push(ts); bp.s.push(r.sys); bp.d.push(r.dia) }
  }
  readings.forEach(add)
  const hrData = () => [hr.t, hr.v, ...lines.hr.map((l) => hr.t.map(() => l.value))]
  const bpData = () => [bp.t, bp.s, bp.d, ...lines.sys.map((l) => bp.t.map(() => l.value)), ...lines.dia.map((l) => bp.t.map(() => l.value))]
  const hrChart = chart(hrEl, t('chart.hr'), [{ label: t('metric.hr'), stroke: '#0f6cbd', width: 2 }, ...lines.hr.map((l) => dashed(lineLabel('hr', l), SEVERITY_COLOR[l.severity]))], hrData())
  const bpChart = chart(bpEl, t('chart.bp'), [
    { label: t('metric.sys'), stroke: '#7c3aed', width: 2 }, { label: t('metric.dia'), stroke: '#059669', width: 2 },
    ...lines.sys.map((l) => dashed(lineLabel('sys', l), SEVERITY_COLOR[l.severity])),
    ...lines.dia.map((l) => dashed(lineLabel('dia', l), SEVERITY_COLOR[l.severity], [2, 4])),
  ], bpData())
  listEl.replaceChildren()
  const all = [...lines.sys.map((l) => ['sys', l]), ...lines.dia.map((l) => ['dia', l]), ...lines.hr.map((l) => ['hr', l])]
  if (!all.length) listEl.append(h('li', { class: 'muted', text: t('res.noThresholds') }))
  for (const [metric, l] of all) listEl.append(h('li', { class: l.severity, 'data-rule-set': l.ruleSet, 'data-metric': metric, 'data-value': String(l.value), text: `${lineLabel(metric, l)}${l.category ? ` (${l.category})` : ''} · ${l.version}` }))
  return {
    add,
    count: () => Math.max(hr.t.length, bp.t.length),
    redraw: () => { hrChart.setData(hrData()); bpChart.setData(bpData()) },
  }
}

/** A clinical report run in one line or a few: protocol, state, period, adherence, result. */
function reportItem (run) {
  const li = h('li', { 'data-report-id': run.id, 'data-state': run.state })
  li.append(h('strong', { text: t('report.line', { protocol: I18N.has(`report.protocol.${run.protocol.id}`) ? t(`report.protocol.${run.protocol.id}`) : run.protocol.id, state: t(`report.state.${run.state}`), start: I18N.date(run.start), end: I18N.date(run.end) }) }))
  const r = run.result || {}
  const lines = []
  if (r.kind === 'home-bp') {
    if (r.adherence) lines.push(t('report.adherence', { done: I18N.num(r.adherence.done), scheduled: I18N.num(r.adherence.scheduled), missed: I18N.num(r.adherence.missed) }))
    const o = r.outcome || {}
    if (o.status === 'complete') lines.push(t('report.mean', { bp: I18N.bp(o.mean.sys, o.mean.dia), n: I18N.num(o.n), cls: t(`class.${o.classification}`), threshold: I18N.bp(o.threshold.sys, o.threshold.dia), guideline: r.guideline }))
    else if (o.status === 'insufficient-data') lines.push(t('report.insufficient', { n: I18N.num(o.n), required: I18N.num(o.required) }))
    else lines.push(t('report.inProgress'))
  } else if (r.kind === 'abpm-24h') {
    for (const p of ['daytime', 'nighttime', 'h24']) {
      const x = r[p]
      if (x && x.mean) lines.push(t('report.period', { period: t(`report.period.${p}`), bp: I18N.bp(x.mean.sys, x.mean.dia), n: I18N.num(x.n), cls: x.classification ? t(`class.${x.classification}`) : '–' }))
    }
    if (r.dip) lines.push(t('report.dip', { pct: I18N.num(r.dip.pct, { maximumFractionDigits: 1 }) + ' %', cls: t(`dip.${r.dip.classification}`) }))
    if (r.outcome?.status === 'in-progress') lines.push(t('report.inProgress'))
  }
  for (const l of lines) li.append(h('div', { class: 'meta', text: l }))
  return li
}

/** An alert as a list item: its message in the person's language, severity, state and times. */
function alertItem (a) {
  const li = h('li', { class: a.severity, 'data-alert-id': a.id, 'data-state': a.state })
  li.append(h('div', {}, h('strong', { text: (a.messages && a.messages[I18N.lang]) || a.message })))
  li.append(h('div', { class: 'meta', text: t('alert.meta', { severity: t(`sev.${a.severity}`), state: t(`state.${a.state}`), opened: I18N.dateTime(a.openedAt) }) + (a.acknowledgedAt ? t('alert.metaAck', { at: I18N.dateTime(a.acknowledgedAt) }) : '') }))
  return li
}

function showRole () {
  const m = state.me
  $('who').textContent = `${t(`role.${m.role}`)}${m.scope ? ' · ' + m.scope : ''}`
}

async function start () {
  $('login').hidden = true
  try {
    state.me = await api('/v1/whoami')
  } catch (e) {
    sessionStorage.removeItem('vitalmesh.key')
    $('login').hidden = false
    $('login-error').textContent = e.status === 401 ? t('login.invalid') : e.message
    return
  }
  let profile = null
  if (state.me.role === 'resident') {
    // the resident's own language and time zone, unless the person chose another language here
    profile = await api(`/v1/residents/${state.me.scope}`)
    I18N.choose(profile.language)
    const prefs = await api(`/v1/residents/${state.me.scope}/alert-preferences`).catch(() => ({}))
    if (prefs.timeZone) I18N.timeZone = prefs.timeZone
    I18N.apply()
    $('lang').value = I18N.lang
  }
  showRole()
  $('logout').hidden = false
  if (state.me.role === 'resident') await residentView(state.me.scope, profile)
  else if (state.me.role === 'operator') await operatorView()
  else if (state.me.role === 'hospital') await clinicianView(state.me.scope)
  else if (state.me.role === 'research') await researchView()
  else if (state.me.role === 'follower') await followerView()
  else $('who').textContent += ' — ' + t('role.other')
}

I18N.choose()
I18N.apply()
// a new language: the page is drawn again (the key stays in sessionStorage)
I18N.toggle($('lang'), () => location.reload())
$('login-form').onsubmit = (e) => {
  e.preventDefault()
  state.key = $('key').value.trim()
  sessionStorage.setItem('vitalmesh.key', state.key)
  start()
}
// a follower accepts an invitation here: the key and the app password are shown once, then the console signs in with the key
$('accept-form').onsubmit = async (e) => {
  e.preventDefault()
  $('accept-error').textContent = ''
  try {
    const res = await fetch('/v1/followers/accept', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: $('invite-code').value.trim(), language: I18N.lang }) })
    const body = await res.json()
    if (!res.ok) throw new Error(body.code === 'VM_INVITATION_INVALID' ? t('accept.invalid') : body.message)
    $('accepted-key').textContent = body.apiKey
    $('accepted-mqtt').textContent = `${body.mqtt.username} / ${body.mqtt.password} · ${body.mqtt.topic}`
    $('accepted').hidden = false
    $('accept-form').hidden = true
    $('accepted-continue').onclick = () => { state.key = body.apiKey; sessionStorage.setItem('vitalmesh.key', state.key); $('accepted').hidden = true; start() }
  } catch (err) { $('accept-error').textContent = err.message }
}
$('logout').onclick = () => { sessionStorage.removeItem('vitalmesh.key'); location.reload() }
if (state.key) start(); else $('login').hidden = false
