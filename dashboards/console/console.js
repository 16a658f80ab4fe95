/* vitalmesh web console: operator and resident views, no framework, uPlot for charts. */
'use strict'
const $ = (id) => document.getElementById(id)
const state = { key: sessionStorage.getItem('vitalmesh.key'), me: null, ws: null }

async function api (path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { authorization: `Bearer ${state.key}`, ...(opts.body ? { 'content-type': 'application/json' } : {}), ...(opts.headers || {}) } })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw Object.assign(new Error(body.message || `HTTP ${res.status}`), { status: res.status, code: body.code })
  return body
}

function fmtTime (ms) { return new Date(ms).toLocaleString() }

function live (onMessage) {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/live`)
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', key: state.key }))
  ws.onmessage = (e) => onMessage(JSON.parse(e.data), ws)
  ws.onclose = () => { const s = $('live-state'); if (s) s.textContent = 'live updates disconnected; reload to reconnect' }
  state.ws = ws
  return ws
}

function chart (el, title, series, data, height = 220) {
  const width = Math.max(320, el.clientWidth || 900)
  return new uPlot({ title, width, height, scales: { x: { time: true } }, series: [{}, ...series] }, data, el)
}

const dashed = (label, stroke) => ({ label, stroke, dash: [6, 6], width: 1, points: { show: false } })

async function residentView (id) {
  $('resident').hidden = false
  const now = Date.now()
  const from = now - 6 * 3600_000
  const res = await api(`/v1/residents/${id}/readings?from=${from}&to=${now + 60_000}&limit=10000`)
  const hr = { t: [], v: [] }; const bp = { t: [], s: [], d: [] }
  const add = (r) => {
    const t = r.ts / 1000
    if (r.hr != null) { hr.t.push(t); hr.v.push(r.hr) }
    if (r.sys != null) { bp.t.push(t); bp.s.push(r.sys); bp.d.push(r.dia) }
  }
  res.readings.forEach(add)
  const hrData = () => [hr.t, hr.v, hr.t.map(() => 120), hr.t.map(() => 40)]
  const bpData = () => [bp.t, bp.s, bp.d, bp.t.map(() => 140), bp.t.map(() => 90)]
  const hrChart = chart($('chart-hr'), 'Heart rate (bpm)', [{ label: 'HR', stroke: '#0f6cbd', width: 2 }, dashed('120', '#b91c1c'), dashed('40', '#b45309')], hrData())
  const bpChart = chart($('chart-bp'), 'Blood pressure (mmHg)', [{ label: 'SYS', stroke: '#7c3aed', width: 2 }, { label: 'DIA', stroke: '#059669', width: 2 }, dashed('140', '#b91c1c'), dashed('90', '#b45309')], bpData())
  const showLatest = (r) => {
    if (!r) return
    const parts = []
    if (r.sys != null) parts.push(`${r.sys}/${r.dia} mmHg`)
    if (r.hr != null) parts.push(`${r.hr} bpm`)
    $('latest').textContent = `${parts.join(', ')} at ${new Date(r.ts).toLocaleTimeString()}`
    $('points').textContent = String(Math.max(hr.t.length, bp.t.length))
  }
  showLatest(res.readings[res.readings.length - 1])
  $('points').textContent = String(Math.max(hr.t.length, bp.t.length))

  const renderAlerts = async () => {
    const { alerts } = await api(`/v1/residents/${id}/alerts?limit=20`)
    const ul = $('alerts')
    ul.replaceChildren()
    if (alerts.length === 0) ul.innerHTML = '<li class="muted">No alerts.</li>'
    for (const a of alerts) {
      const li = document.createElement('li')
      li.className = a.severity
      li.dataset.alertId = a.id
      li.dataset.state = a.state
      li.innerHTML = `<div><strong></strong></div><div class="meta"></div>`
      li.querySelector('strong').textContent = a.message
      li.querySelector('.meta').textContent = `${a.severity} · ${a.state} · opened ${fmtTime(a.openedAt)}${a.acknowledgedAt ? ' · acknowledged ' + fmtTime(a.acknowledgedAt) : ''}`
      if (a.state === 'open') {
        const b = document.createElement('button')
        b.textContent = 'Acknowledge'
        b.onclick = async () => { b.disabled = true; await api(`/v1/alerts/${a.id}/ack`, { method: 'POST' }); await renderAlerts() }
        li.appendChild(b)
      }
      ul.appendChild(li)
    }
  }
  await renderAlerts()

  const profile = await api(`/v1/residents/${id}`)
  $('consent').checked = profile.researchConsent
  $('consent').onchange = async (e) => {
    $('consent-state').textContent = 'saving…'
    const r = await api(`/v1/residents/${id}/consent`, { method: 'PUT', body: JSON.stringify({ research: e.target.checked }) })
    $('consent-state').textContent = r.research ? 'shared' : 'not shared'
  }

  live((m) => {
    if (m.type === 'ready') $('live-state').textContent = 'live'
    if (m.type === 'readings') {
      for (const r of m.readings) add(r)
      hrChart.setData(hrData()); bpChart.setData(bpData())
      showLatest(m.readings[m.readings.length - 1])
    }
    if (m.type === 'alert') renderAlerts()
  })
}

async function operatorView () {
  $('operator').hidden = false
  const rps = { t: [], v: [] }
  const rpsChart = chart($('chart-rps'), '', [{ label: 'readings/s', stroke: '#0f6cbd', width: 2, fill: 'rgba(15,108,189,.1)' }], [rps.t, rps.v], 180)
  const showStats = (s) => {
    $('rps').textContent = String(s.readingsPerS ?? '–')
    $('clients').textContent = String(s.mqttClients)
    $('open-critical').textContent = String(s.openAlerts.critical)
    $('open-warning').textContent = String(s.openAlerts.warning)
    $('outbox').textContent = String(s.outboxPending)
    rps.t.push(s.at / 1000); rps.v.push(s.readingsPerS ?? 0)
    if (rps.t.length > 300) { rps.t.shift(); rps.v.shift() }
    rpsChart.setData([rps.t, rps.v])
  }
  showStats(await api('/v1/stats'))
  const devices = async () => {
    try {
      const { devices: list } = await api('/v1/devices?limit=200')
      const body = $('devices').querySelector('tbody')
      body.replaceChildren()
      // online devices first, then the most recently seen
      const sorted = [...list].sort((a, b) => (Number(b.online) - Number(a.online)) || ((b.lastSeenAt ?? 0) - (a.lastSeenAt ?? 0)))
      for (const d of sorted) {
        const tr = document.createElement('tr')
        tr.dataset.deviceId = d.id
        for (const [v, cls] of [[d.id], [d.residentId], [d.model ?? ''], [d.online ? 'online' : 'offline', d.online ? 'online' : 'offline'], [d.lastSeenAt ? fmtTime(d.lastSeenAt) : 'never']]) {
          const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td)
        }
        body.appendChild(tr)
      }
      $('devices-summary').textContent = `${list.filter((d) => d.online).length} online of ${list.length}`
      $('devices-error').textContent = ''
    } catch (e) { $('devices-error').textContent = `device list unavailable: ${e.message}` }
  }
  await devices()
  setInterval(devices, 2000)
  live((m) => { if (m.type === 'stats') showStats(m.stats) })
}

async function start () {
  $('login').hidden = true
  try {
    state.me = await api('/v1/whoami')
  } catch (e) {
    sessionStorage.removeItem('vitalmesh.key')
    $('login').hidden = false
    $('login-error').textContent = e.status === 401 ? 'That key is not valid.' : e.message
    return
  }
  $('who').textContent = `${state.me.role}${state.me.scope ? ' · ' + state.me.scope : ''}`
  $('logout').hidden = false
  if (state.me.role === 'resident') await residentView(state.me.scope)
  else if (state.me.role === 'operator') await operatorView()
  else $('who').textContent += ' — the console has operator and resident views; use the API for this role'
}

$('login-form').onsubmit = (e) => {
  e.preventDefault()
  state.key = $('key').value.trim()
  sessionStorage.setItem('vitalmesh.key', state.key)
  start()
}
$('logout').onclick = () => { sessionStorage.removeItem('vitalmesh.key'); location.reload() }
if (state.key) start(); else $('login').hidden = false
