/* The console's views, one per audience: resident, operator (coordination centre), clinician (hospital), research. */
'use strict'

const CONCERNS = ['bp-high', 'bp-low', 'hr-high', 'hr-low', 'bp-average', 'no-data']
const TIME_ZONES = ['Asia/Shanghai', 'Asia/Hong_Kong', 'Asia/Taipei', 'Asia/Tokyo', 'Asia/Singapore', 'Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Los_Angeles', 'UTC']

/** "hospital h1", "coordination centre"...: who an audit entry or a transition names. */
function actorText (role, scope) {
  const name = I18N.has(`role.${role}`) ? t(`role.${role}`) : role
  return scope && role !== 'operator' ? `${name} ${scope}` : name
}

async function residentView (id, profile) {
  $('resident').hidden = false
  $('live-state').textContent = t('live.connecting')
  $('latest').textContent = t('res.noReading')
  const now = Date.now()
  const [res, standards] = await Promise.all([
    api(`/v1/residents/${id}/readings?from=${now - 6 * 3600_000}&to=${now + 60_000}&limit=10000`),
    api('/v1/standards'),
  ])
  const lines = thresholdLines(standards.ruleSets, profile)
  const vitals = vitalsCharts($('chart-hr'), $('chart-bp'), $('thresholds'), res.readings, lines)
  const showLatest = (r) => {
    if (!r) return
    const parts = []
    if (r.sys != null) parts.push(I18N.bp(r.sys, r.dia))
    if (r.hr != null) parts.push(I18N.hr(r.hr))
    $('latest').textContent = t('at', { what: parts.join(t('list.sep')), time: I18N.time(r.ts, true) })
    $('points').textContent = String(vitals.count())
  }
  showLatest(res.readings[res.readings.length - 1])
  $('points').textContent = String(vitals.count())

  const renderAlerts = async () => {
    const { alerts } = await api(`/v1/residents/${id}/alerts?limit=20`)
    const ul = $('alerts')
    ul.replaceChildren()
    if (alerts.length === 0) ul.append(h('li', { class: 'muted', text: t('res.noAlerts') }))
    for (const a of alerts) {
      const li = alertItem(a)
      if (a.state === 'open') {
        const b = h('button', { type: 'button', text: t('alert.ack') })
        b.onclick = async () => { b.disabled = true; await api(`/v1/alerts/${a.id}/ack`, { method: 'POST' }); await renderAlerts() }
        li.append(b)
      }
      ul.append(li)
    }
  }

  // snoozes and quiet hours
  for (const c of CONCERNS) $('snooze-concern').append(h('option', { value: c, text: t(`concern.${c}`) }))
  const renderPrefs = (p) => {
    const ul = $('snoozes')
    ul.replaceChildren()
    const active = Object.entries(p.snoozes || {}).filter(([, until]) => until > Date.now())
    if (!active.length) ul.append(h('li', { class: 'muted', text: t('care.noSnoozes') }))
    for (const [concern, until] of active) {
      const b = h('button', { type: 'button', class: 'secondary', text: t('care.unsnooze') })
      b.onclick = async () => { b.disabled = true; renderPrefs(await api(`/v1/residents/${id}/snoozes/${concern}`, { method: 'DELETE' })) }
      ul.append(h('li', { 'data-concern': concern }, h('span', { text: t('care.snoozed', { concern: I18N.has(`concern.${concern}`) ? t(`concern.${concern}`) : concern, until: I18N.dateTime(until) }) }), ' ', b))
    }
    const tz = p.timeZone || I18N.timeZone
    const zones = TIME_ZONES.includes(tz) ? TIME_ZONES : [tz, ...TIME_ZONES]
    $('time-zone').replaceChildren(...zones.map((z) => h('option', { value: z, text: z })))
    $('time-zone').value = tz
    $('quiet-start').value = p.quietHours?.start ?? ''
    $('quiet-end').value = p.quietHours?.end ?? ''
    $('quiet-state').textContent = p.quietHours ? t('care.quietNow', { start: p.quietHours.start, end: p.quietHours.end, tz }) : t('care.quietNone', { tz })
  }
  $('snooze-form').onsubmit = async (e) => {
    e.preventDefault()
    try {
      renderPrefs(await api(`/v1/residents/${id}/snoozes`, { method: 'POST', body: { concern: $('snooze-concern').value, minutes: Number($('snooze-minutes').value) } }))
    } catch (err) { $('quiet-state').textContent = t('error.prefix', { message: err.message }) }
  }
  const savePrefs = async (quietHours) => {
    $('quiet-state').textContent = t('saving')
    try {
      const p = await api(`/v1/residents/${id}/alert-preferences`, { method: 'PUT', body: { timeZone: $('time-zone').value, quietHours } })
      if (p.timeZone && p.timeZone !== I18N.timeZone) { I18N.timeZone = p.timeZone }
      renderPrefs(p)
    } catch (err) { $('quiet-state').textContent = t('error.prefix', { message: err.message }) }
  }
  $('quiet-form').onsubmit = (e) => {
    e.preventDefault()
    const start = $('quiet-start').value; const end = $('quiet-end').value
    savePrefs(start && end ? { start, end } : null)
  }
  $('quiet-clear').onclick = () => savePrefs(null)

  const renderReports = async () => {
    const { reports } = await api(`/v1/residents/${id}/reports`)
    $('reports').replaceChildren(...(reports.length ? reports.map(reportItem) : [h('li', { class: 'muted', text: t('res.noReports') })]))
  }

  const renderAccessLog = async () => {
    const { entries } = await api(`/v1/residents/${id}/access-log?limit=50`)
    const body = $('access-log').querySelector('tbody')
    body.replaceChildren()
    if (!entries.length) body.append(h('tr', {}, h('td', { colspan: '3', class: 'muted', text: t('res.accessLogEmpty') })))
    for (const e of entries) {
      const what = I18N.has(`action.${e.action}`) ? t(`action.${e.action}`) : t('action.other', { action: e.action })
      // a follower is named as the resident named them
      const who = e.follower ? `${t('role.follower')} ${e.follower.name}` : actorText(e.role, e.scope)
      body.append(h('tr', { 'data-seq': String(e.seq), 'data-role': e.role }, h('td', { text: I18N.dateTime(e.at) }), h('td', { text: who }), h('td', { text: what })))
    }
  }

  // followers: who is told of my alerts; invite one (a code to pass on), remove one
  for (const r of ['family', 'community-doctor', 'carer', 'friend']) $('inv-relation').append(h('option', { value: r, text: t(`rel.${r}`) }))
  const renderFollowers = async () => {
    const { followers } = await api(`/v1/residents/${id}/followers`)
    const shown = followers.filter((f) => f.status !== 'removed')
    const ul = $('followers')
    ul.replaceChildren()
    if (!shown.length) ul.append(h('li', { class: 'muted', text: t('res.noFollowers') }))
    for (const f of shown) {
      const b = h('button', { type: 'button', class: 'secondary', text: t('fol.remove') })
      b.onclick = async () => { b.disabled = true; await api(`/v1/residents/${id}/followers/${f.id}`, { method: 'DELETE' }); await renderFollowers() }
      ul.append(h('li', { 'data-follower-id': f.id, 'data-status': f.status }, h('span', { text: t('fol.item', { name: f.name, relation: t(`rel.${f.relation}`), status: t(`fol.status.${f.status}`), since: I18N.dateTime(f.acceptedAt ?? f.invitedAt) }) }), ' ', b))
    }
  }
  $('invite-form').onsubmit = async (e) => {
    e.preventDefault()
    try {
      const r = await api(`/v1/residents/${id}/followers`, { method: 'POST', body: { name: $('inv-name').value.trim(), relation: $('inv-relation').value, language: $('inv-language').value } })
      $('invite-state').replaceChildren(h('span', { 'data-testid': 'invitation', text: t('inv.code', { name: r.follower.name, until: I18N.dateTime(r.invitation.expiresAt), code: r.invitation.code }) }))
      $('invite-state').dataset.code = r.invitation.code
      await renderFollowers()
    } catch (err) { $('invite-state').textContent = t('error.prefix', { message: err.message }) }
  }

  $('consent').checked = profile.researchConsent
  $('consent').onchange = async (e) => {
    $('consent-state').textContent = t('saving')
    const r = await api(`/v1/residents/${id}/consent`, { method: 'PUT', body: { research: e.target.checked } })
    $('consent-state').textContent = r.research ? t('consent.shared') : t('consent.notShared')
  }

  await Promise.all([
    renderAlerts(),
    api(`/v1/residents/${id}/alert-preferences`).then(renderPrefs),
    renderReports(),
    renderAccessLog(),
    renderFollowers(),
  ])

  live((m) => {
    if (m.type === 'ready') $('live-state').textContent = t('live.on')
    if (m.type === 'readings') {
      for (const r of m.readings) vitals.add(r)
      vitals.redraw()
      showLatest(m.readings[m.readings.length - 1])
    }
    if (m.type === 'alert') renderAlerts()
  })
}

async function operatorView () {
  $('operator').hidden = false
  const rps = { t: [], v: [] }
  const rpsChart = chart($('chart-rps'), '', [{ label: t('op.rps'), stroke: '#0f6cbd', width: 2, fill: 'rgba(15,108,189,.1)' }], [rps.t, rps.v], 180)
  const showStats = (s) => {
    $('rps').textContent = s.readingsPerS == null ? '–' : I18N.num(s.readingsPerS)
    $('clients').textContent = String(s.mqttClients)
    $('open-critical').textContent = String(s.openAlerts.critical)
    $('open-warning').textContent = String(s.openAlerts.warning)
    $('outbox').textContent = String(s.outboxPending)
    rps.t.push(s.at / 1000); rps.v.push(s.readingsPerS ?? 0)
    if (rps.t.length > 300) { rps.t.shift(); rps.v.shift() }
    rpsChart.setData([rps.t, rps.v])
  }
  showStats(await api('/v1/stats'))

  // the worklist: most severe first, then the longest waiting
  const worklist = async () => {
    // the node's order: the furthest along the escalation chain, then the most severe, then the longest waiting
    const { alerts } = await api('/v1/alerts/attention')
    const sorted = alerts
    const body = $('worklist').querySelector('tbody')
    body.replaceChildren()
    if (!sorted.length) body.append(h('tr', {}, h('td', { colspan: '6', class: 'muted', text: t('op.worklistEmpty') })))
    for (const a of sorted) {
      const action = h('td')
      if (a.state === 'open') {
        const b = h('button', { type: 'button', text: t('alert.ack') })
        b.onclick = async () => {
          b.disabled = true
          try { await api(`/v1/alerts/${a.id}/ack`, { method: 'POST' }) } catch (e) { $('worklist-state').textContent = t('error.prefix', { message: e.message }) }
          await worklist()
        }
        action.append(b)
      }
      if (a.state === 'open' || a.state === 'acknowledged') action.append(handle(a))
      if (a.state === 'withdrawn' || a.state === 'superseded') {
        const reason = h('input', { type: 'text', maxlength: '500', 'aria-label': t('op.closeReason'), placeholder: t('op.closeReason'), class: 'reason' })
        const b = h('button', { type: 'button', text: t('op.close') })
        b.onclick = async () => {
          if (!reason.value.trim()) { reason.focus(); return }
          b.disabled = true
          try { await api(`/v1/alerts/${a.id}/close`, { method: 'POST', body: { reason: reason.value.trim() } }) } catch (e) { $('worklist-state').textContent = t('error.prefix', { message: e.message }) }
          await worklist()
        }
        action.append(reason, ' ', b)
      }
      body.append(h('tr', { 'data-alert-id': a.id, 'data-state': a.state, class: a.severity },
        h('td', { class: a.severity, text: t(`sev.${a.severity}`) }),
        h('td', { text: a.residentId }),
        h('td', { text: (a.messages && a.messages[I18N.lang]) || a.message }),
        h('td', { class: 'state', text: t(`state.${a.state}`) + (a.escalatedAt ? t('op.step.hospital') : a.deskAt ? t('op.step.desk') : a.followersAt ? t('op.step.followers') : '') + (a.assignedTo ? t('op.assignedTo', { to: a.assignedTo }) : '') }),
        h('td', { text: I18N.duration(Date.now() - a.openedAt) }),
        action))
    }
  }

  /** assign, note, resolve with a reason: what a nurse at the centre does with an alert */
  const handle = (a) => {
    const box = h('details', { class: 'handle' }, h('summary', { text: t('op.handle') }))
    const form = (label, button, path, field, after) => {
      const input = h('input', { type: 'text', maxlength: '500', 'aria-label': label, placeholder: label, 'data-field': field })
      const b = h('button', { type: 'button', class: 'secondary', text: button, 'data-action': field })
      b.onclick = async () => {
        if (!input.value.trim()) { input.focus(); return }
        b.disabled = true
        try { await api(`/v1/alerts/${a.id}/${path}`, { method: 'POST', body: { [field]: input.value.trim() } }); $('worklist-state').textContent = after } catch (e) { $('worklist-state').textContent = t('error.prefix', { message: e.message }) }
        await worklist()
      }
      return h('div', { class: 'row' }, input, ' ', b)
    }
    box.append(form(t('op.assignTo'), t('op.assign'), 'assign', 'to', t('op.assigned')), form(t('op.note'), t('op.addNote'), 'notes', 'text', t('op.noted')), form(t('op.resolveReason'), t('op.resolve'), 'resolve', 'reason', t('op.resolved')))
    return box
  }

  let deviceList = []
  const fleetHealth = () => {
    const hours = Math.max(1, Number($('silent-hours').value) || 24)
    const cutoff = Date.now() - hours * 3600_000
    const silent = deviceList.filter((d) => !d.online && (d.lastSeenAt ?? 0) < cutoff).sort((a, b) => (a.lastSeenAt ?? 0) - (b.lastSeenAt ?? 0))
    $('silent-summary').textContent = silent.length ? t('op.silentCount', { n: I18N.num(silent.length), h: I18N.num(hours) }) : t('op.silentNone')
    const body = $('silent').querySelector('tbody')
    body.replaceChildren(...silent.slice(0, 50).map((d) => h('tr', { 'data-device-id': d.id },
      h('td', { text: d.id }), h('td', { text: d.residentId }),
      h('td', { text: d.lastSeenAt ? I18N.dateTime(d.lastSeenAt) : t('never') }),
      h('td', { text: d.lastSeenAt ? I18N.duration(Date.now() - d.lastSeenAt) : t('never') }))))
    const versions = new Map()
    for (const d of deviceList) versions.set(d.firmware || '', (versions.get(d.firmware || '') ?? 0) + 1)
    // the validation status of each model in the fleet: cuffless and unvalidated models' BP readings stay out of protocol averages
    const models = new Map()
    for (const d of deviceList) {
      const k = d.model || ''
      const m = models.get(k) ?? { n: 0, status: d.modelValidation?.status ?? 'unknown', protocol: d.modelValidation?.protocol ?? null }
      m.n++
      models.set(k, m)
    }
    $('models').querySelector('tbody').replaceChildren(...[...models].sort((a, b) => b[1].n - a[1].n).map(([model, m]) => h('tr', { 'data-model': model, 'data-validation': m.status },
      h('td', { text: model || t('unknown') }),
      h('td', { class: m.status === 'validated' ? '' : 'warning', text: t(`val.${m.status}`) + (m.protocol ? ` (${m.protocol})` : '') }),
      h('td', { text: I18N.num(m.n) }))))
    $('firmware').querySelector('tbody').replaceChildren(...[...versions].sort((a, b) => b[1] - a[1]).map(([v, n]) => h('tr', { 'data-firmware': v }, h('td', { text: v || t('unknown') }), h('td', { text: I18N.num(n) }))))
  }
  $('silent-hours').oninput = fleetHealth
  $('fleet-form').onsubmit = (e) => { e.preventDefault(); fleetHealth() }

  const devices = async () => {
    try {
      const list = []
      for (let after = '', pages = 0; pages < 20; pages++) {
        const page = await api(`/v1/devices?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`)
        list.push(...page.devices)
        if (!page.next) break
        after = page.next
      }
      deviceList = list
      const body = $('devices').querySelector('tbody')
      body.replaceChildren()
      // online devices first, then the most recently seen
      const sorted = [...list].sort((a, b) => (Number(b.online) - Number(a.online)) || ((b.lastSeenAt ?? 0) - (a.lastSeenAt ?? 0)))
      for (const d of sorted.slice(0, 200)) {
        body.append(h('tr', { 'data-device-id': d.id },
          h('td', { text: d.id }), h('td', { text: d.residentId }), h('td', { text: d.model ?? '' }),
          h('td', { class: d.online ? 'online' : 'offline', text: t(d.online ? 'status.online' : 'status.offline') }),
          h('td', { text: d.lastSeenAt ? I18N.dateTime(d.lastSeenAt) : t('never') })))
      }
      $('devices-summary').textContent = t('op.devicesSummary', { online: I18N.num(list.filter((d) => d.online).length), total: I18N.num(list.length) })
      $('devices-error').textContent = ''
      fleetHealth()
    } catch (e) { $('devices-error').textContent = t('op.devicesError', { message: e.message }) }
  }
  await Promise.all([devices(), worklist()])
  setInterval(devices, 2000)
  live((m) => {
    if (m.type === 'stats') showStats(m.stats)
    if (m.type === 'alert') worklist()
  })
}

async function clinicianView (hospitalId) {
  $('clinician').hidden = false
  const render = async () => {
    const days = Math.max(1, Number($('nodata-days').value) || 3)
    const [{ residents }, { alerts }] = await Promise.all([api(`/v1/hospitals/${hospitalId}/residents`), api('/v1/alerts/attention')])
    const since = Date.now() - days * 86400_000
    const rows = await Promise.all(residents.map(async (id) => {
      const open = alerts.filter((a) => a.residentId === id && (a.state === 'open' || a.state === 'acknowledged'))
      const [profile, recent, reports] = await Promise.all([
        api(`/v1/residents/${id}`).catch(() => ({ id })),
        api(`/v1/residents/${id}/readings?from=${since}&limit=1`).catch(() => ({ count: 0 })),
        api(`/v1/residents/${id}/reports`).catch(() => ({ reports: [] })),
      ])
      // the latest finished home-BP week above the guideline's home threshold; the latest 24-hour profile without a night-time dip
      const done = reports.reports.filter((x) => x.result && x.state === 'finished').sort((a, b) => b.end - a.end)
      const home = done.find((x) => x.result.kind === 'home-bp' && x.result.outcome?.status === 'complete')
      const abpm = done.find((x) => x.result.kind === 'abpm-24h' && x.result.dip)
      const uncontrolled = home?.result.outcome.classification === 'hypertension'
      const nonDipper = abpm && ['non-dipper', 'reverse-dipper'].includes(abpm.result.dip.classification)
      const need = open.some((a) => a.severity === 'critical') ? 'critical' : uncontrolled ? 'uncontrolled' : nonDipper ? 'nonDipper' : open.some((a) => a.severity === 'warning') ? 'warning' : recent.count === 0 ? 'noData' : 'ok'
      return { id, profile, open, need }
    }))
    const rank = { critical: 0, uncontrolled: 1, nonDipper: 2, warning: 3, noData: 4, ok: 5 }
    rows.sort((a, b) => (rank[a.need] - rank[b.need]) || a.id.localeCompare(b.id))
    const body = $('patients').querySelector('tbody')
    body.replaceChildren()
    if (!rows.length) body.append(h('tr', {}, h('td', { colspan: '4', class: 'muted', text: t('cl.empty') })))
    for (const r of rows) {
      const open = h('button', { type: 'button', text: t('cl.open') })
      open.onclick = () => patient(r.id, r.profile)
      body.append(h('tr', { 'data-resident-id': r.id, 'data-need': r.need },
        h('td', { text: r.profile.name ? `${r.profile.name} (${r.id})` : r.id }),
        h('td', { class: r.need === 'critical' ? 'critical' : r.need === 'warning' ? 'warning' : '', text: t(`need.${r.need}`, { n: I18N.num(days) }) }),
        h('td', { text: I18N.num(r.open.length) }),
        h('td', {}, open)))
    }
  }
  let standards = null
  const patient = async (id, profile) => {
    $('patient').hidden = false
    $('patient-title').textContent = t('cl.trends', { name: profile.name || id })
    for (const el of [$('chart-patient-hr'), $('chart-patient-bp')]) el.replaceChildren()
    const now = Date.now()
    standards ??= await api('/v1/standards')
    const [readings, reports, alertList] = await Promise.all([
      api(`/v1/residents/${id}/readings?from=${now - 7 * 86400_000}&to=${now + 60_000}&limit=10000&maxPoints=2000`),
      api(`/v1/residents/${id}/reports`),
      api(`/v1/residents/${id}/alerts?limit=50`),
    ])
    // a long range comes as windows: the chart draws their means
    const points = readings.downsampled ? readings.windows.map((w) => ({ ts: w.start, hr: w.hrMean ?? null, sys: w.sysMean ?? null, dia: w.diaMean ?? null })) : readings.readings
    vitalsCharts($('chart-patient-hr'), $('chart-patient-bp'), $('patient-thresholds'), points, thresholdLines(standards.ruleSets, profile))
    $('patient-reports').replaceChildren(...(reports.reports.length ? reports.reports.map(reportItem) : [h('li', { class: 'muted', text: t('res.noReports') })]))
    const ul = $('patient-alerts')
    ul.replaceChildren()
    if (!alertList.alerts.length) ul.append(h('li', { class: 'muted', text: t('res.noAlerts') }))
    for (const a of alertList.alerts) {
      const li = alertItem(a)
      const b = h('button', { type: 'button', class: 'secondary', text: t('alert.history'), 'aria-expanded': 'false' })
      b.onclick = async () => {
        b.disabled = true
        const { transitions } = await api(`/v1/alerts/${a.id}/history`)
        li.append(h('ol', { class: 'history' }, ...transitions.map((x) => h('li', { text: t('alert.transition', { at: I18N.dateTime(x.at), state: I18N.has(`state.${x.state}`) ? t(`state.${x.state}`) : x.state, by: x.actor }) }))))
        b.setAttribute('aria-expanded', 'true')
      }
      li.append(b)
      ul.append(li)
    }
    // start a home-BP week for the patient, with the guideline whose home threshold applies
    $('protocol-guideline').replaceChildren(...['china-2018', 'esh-2023', 'acc-aha-2017'].map((g) => h('option', { value: g, text: t(`guideline.${g}`) })))
    $('protocol-state').textContent = ''
    $('protocol-form').onsubmit = async (e) => {
      e.preventDefault()
      try {
        await api(`/v1/residents/${id}/reports`, { method: 'POST', body: { protocol: 'home-bp-7d', guideline: $('protocol-guideline').value } })
        $('protocol-state').textContent = t('cl.protocolStarted')
        const again = await api(`/v1/residents/${id}/reports`)
        $('patient-reports').replaceChildren(...again.reports.map(reportItem))
      } catch (err) { $('protocol-state').textContent = t('error.prefix', { message: err.message }) }
    }
    // personal thresholds: a rule's value for this patient (threshold rules of the rule sets in force)
    const metricOf = (r) => (r.when || []).filter((c) => c.metric)
    const rules = standards.ruleSets.flatMap((rs) => rs.rules.filter((r) => (r.kind === 'threshold' || r.kind === 'sustained') && metricOf(r).length === 1).map((r) => ({ key: `${rs.id}/${r.id}`, title: (r.title && (r.title[I18N.lang] || r.title.en)) || r.title || r.id, value: metricOf(r)[0].value })))
    $('override-rule').replaceChildren(...rules.map((r) => h('option', { value: r.key, text: `${typeof r.title === 'string' ? r.title : r.key} (${r.value})` })))
    const showOverrides = (list) => {
      $('patient-overrides').replaceChildren(...(list.length ? list.map((o) => h('li', { 'data-rule-key': o.ruleKey, text: t('cl.overrideItem', { rule: o.ruleKey, value: I18N.num(o.params.value ?? o.params.min ?? o.params.max), by: o.setBy }) })) : [h('li', { class: 'muted', text: t('cl.noOverrides') })]))
    }
    showOverrides((await api(`/v1/residents/${id}/overrides`)).overrides)
    $('override-state').textContent = ''
    $('override-form').onsubmit = async (e) => {
      e.preventDefault()
      try {
        const r = await api(`/v1/residents/${id}/overrides`, { method: 'PUT', body: { ruleKey: $('override-rule').value, params: { value: Number($('override-value').value) } } })
        showOverrides(r.overrides)
        $('override-state').textContent = t('saved')
      } catch (err) { $('override-state').textContent = t('error.prefix', { message: err.message }) }
    }
    $('patient').scrollIntoView({ block: 'start' })
  }
  $('nodata-days').onchange = render
  $('nodata-form').onsubmit = (e) => { e.preventDefault(); render() }
  await render()
}

const SAMPLE_RULE_SET = `id: my-institution-bp
version: 1.0.0
publisher: My research institution
citation: Internal protocol 2025-01
effectiveDate: 2025-01-01
audience:
  kind: all
rules:
  - id: sbp-very-high
    kind: threshold
    severity: warning
    title:
      en: Very high systolic pressure
      zh-CN: 收缩压很高
    when:
      - metric: sys
        op: '>='
        value: 160
`

async function researchView () {
  $('research').hidden = false
  const editor = $('ruleset-yaml')
  editor.value = sessionStorage.getItem('vitalmesh.ruleset') ?? SAMPLE_RULE_SET
  editor.oninput = () => sessionStorage.setItem('vitalmesh.ruleset', editor.value)
  const errors = $('editor-errors')
  const showErrors = (message) => {
    // the API lists issues as "path: message; path: message"
    const issues = String(message).split(/;\s+/).filter(Boolean)
    errors.replaceChildren(h('ul', { class: 'errors' }, ...issues.map((i) => h('li', { class: 'error', text: i }))))
    editor.setAttribute('aria-invalid', 'true')
  }
  const clearErrors = () => { errors.replaceChildren(h('p', { class: 'ok', text: t('rs.noErrors') })); editor.removeAttribute('aria-invalid') }
  $('ruleset-form').onsubmit = async (e) => {
    e.preventDefault()
    $('editor-state').textContent = t('saving')
    try {
      const report = await api('/v1/rulesets/backtest', { method: 'POST', body: { ruleSet: editor.value, days: Number($('backtest-days').value) || 30 } })
      clearErrors()
      $('editor-state').textContent = ''
      $('backtest').hidden = false
      $('backtest-result').replaceChildren(reportTable(report))
    } catch (err) {
      $('editor-state').textContent = ''
      if (err.status === 404) { errors.replaceChildren(); $('editor-state').textContent = t('rs.backtestUnavailable'); return }
      showErrors(err.message)
    }
  }
  $('publish').onclick = async () => {
    $('editor-state').textContent = t('saving')
    try {
      const r = await api('/v1/rulesets', { method: 'POST', body: editor.value, type: 'application/yaml' })
      clearErrors()
      $('editor-state').textContent = t('rs.published', { id: r.id, version: r.version })
      await versions()
    } catch (err) { $('editor-state').textContent = ''; showErrors(err.message) }
  }
  const versions = async () => {
    const [{ versions: list }, { ruleSets: active }] = await Promise.all([api('/v1/rulesets'), api('/v1/standards')])
    const isActive = (v) => active.some((a) => a.id === v.id && a.version === v.version)
    $('versions').replaceChildren(...list.map((v) => h('li', { 'data-rule-set': `${v.id}@${v.version}`, text: t('rs.versionLine', { id: v.id, version: v.version, publisher: v.publisher ?? '', active: isActive(v) ? t('rs.active') : '' }) })))
  }
  await versions()
}

/** A backtest report, whatever its exact shape: numbers in tables, nested objects as sub-tables, keys translated where known. */
function reportTable (value, depth = 0) {
  const label = (k) => (I18N.has(`rs.key.${k}`) ? t(`rs.key.${k}`) : k)
  if (value == null || typeof value !== 'object') return h('span', { text: typeof value === 'number' ? I18N.num(value, { maximumFractionDigits: 2 }) : String(value ?? '–') })
  if (Array.isArray(value)) return h('ul', { class: 'plain' }, ...value.map((v) => h('li', {}, reportTable(v, depth + 1))))
  const entries = Object.entries(value)
  const flat = entries.filter(([, v]) => v == null || typeof v !== 'object')
  const nested = entries.filter(([, v]) => v != null && typeof v === 'object')
  const box = h('div', { class: 'report' })
  if (flat.length) box.append(h('table', {}, h('tbody', {}, ...flat.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: label(k) }), h('td', {}, reportTable(v, depth + 1)))))))
  for (const [k, v] of nested) box.append(h(depth ? 'h4' : 'h3', { text: label(k) }), reportTable(v, depth + 1))
  return box
}

/** A follower (a relative, a community doctor): the alerts of the resident it follows, acknowledge, how it is told. */
async function followerView () {
  $('follower').hidden = false
  let me = await api('/v1/followers/me')
  const name = me.resident.name || me.resident.id
  $('follow-title').textContent = t('fol.title', { name })
  $('live-state-f').textContent = t('live.connecting')
  const renderAlerts = async () => {
    const { alerts } = await api(`/v1/residents/${me.resident.id}/alerts?limit=20`)
    const ul = $('follower-alerts')
    ul.replaceChildren()
    if (!alerts.length) ul.append(h('li', { class: 'muted', text: t('fol.none') }))
    for (const a of alerts) {
      const li = alertItem(a)
      if (a.followersAt) li.append(h('div', { class: 'meta', text: t('fol.escalated', { at: I18N.dateTime(a.followersAt) }) }))
      if (a.state === 'open') {
        const b = h('button', { type: 'button', text: t('alert.ack') })
        b.onclick = async () => { b.disabled = true; await api(`/v1/alerts/${a.id}/ack`, { method: 'POST' }); await renderAlerts() }
        li.append(b)
      }
      ul.append(li)
    }
  }
  const NOTIFY = ['all', 'warning', 'critical', 'escalations']
  $('fol-notify').replaceChildren(...NOTIFY.map((n) => h('option', { value: n, text: t(`fol.notify.${n}`) })))
  const renderPrefs = (f) => {
    $('fol-notify').value = f.notify
    $('fol-mqtt').checked = f.channels.includes('mqtt')
    $('fol-live').checked = f.channels.includes('live')
  }
  renderPrefs(me.follower)
  $('follower-prefs').onsubmit = async (e) => {
    e.preventDefault()
    $('fol-prefs-state').textContent = t('saving')
    try {
      const channels = [...($('fol-mqtt').checked ? ['mqtt'] : []), ...($('fol-live').checked ? ['live'] : [])]
      me = { ...me, follower: (await api('/v1/followers/me', { method: 'PUT', body: { notify: $('fol-notify').value, channels } })).follower }
      renderPrefs(me.follower)
      $('fol-prefs-state').textContent = t('saved')
    } catch (err) { $('fol-prefs-state').textContent = t('error.prefix', { message: err.message }) }
  }
  $('fol-leave').onclick = async () => {
    await api('/v1/followers/me', { method: 'DELETE' })
    $('follower-alerts').replaceChildren(h('li', { class: 'muted', text: t('fol.left') }))
  }
  await renderAlerts()
  live((m) => {
    if (m.type === 'ready') $('live-state-f').textContent = t('live.on')
    if (m.type === 'alert') renderAlerts()
  })
}
