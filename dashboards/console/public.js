/* Public regional statistics: no sign-in, only the k-suppressed aggregates of /public/regions/:id/stats. */
'use strict'
const $ = (id) => document.getElementById(id)
const t = (key, vars) => I18N.t(key, vars)

function cell (value, k, text) {
  const td = document.createElement('td')
  if (value == null) {
    td.className = 'suppressed'
    td.textContent = t('pub.suppressed', { k: I18N.num(k) })
    td.title = t('pub.suppressedTitle', { k: I18N.num(k) })
  } else td.textContent = text(value)
  return td
}

async function show () {
  I18N.apply()
  try {
    let region = new URLSearchParams(location.search).get('region')
    if (!region) region = (await (await fetch('/public/regions')).json()).regions?.[0]?.id
    if (!region) { $('public-error').textContent = t('pub.regionMissing'); return }
    const res = await fetch(`/public/regions/${encodeURIComponent(region)}/stats?days=14`)
    const body = await res.json()
    if (!res.ok) { $('public-error').textContent = t('error.prefix', { message: body.message || res.status }); return }
    $('region-name').textContent = t('pub.region', { id: body.region.id, level: body.region.level })
    $('public-note').textContent = t('pub.note', { k: I18N.num(body.k) })
    const tbody = $('public-stats').querySelector('tbody')
    tbody.replaceChildren()
    if (!body.windows.length) {
      const tr = document.createElement('tr'); const td = document.createElement('td')
      td.colSpan = 5; td.className = 'muted'; td.textContent = t('pub.empty'); tr.append(td); tbody.append(tr)
    }
    for (const w of [...body.windows].reverse()) {
      const tr = document.createElement('tr')
      tr.dataset.start = String(w.start)
      tr.dataset.suppressed = String(w.suppressed)
      const th = document.createElement('th'); th.scope = 'row'; th.textContent = I18N.date(w.start); tr.append(th)
      tr.append(cell(w.residents, body.k, (v) => I18N.num(v)), cell(w.readings, body.k, (v) => I18N.num(v)), cell(w.bpInRange, body.k, (v) => I18N.pct(v)), cell(w.alertsPer1000, body.k, (v) => I18N.num(v, { maximumFractionDigits: 1 })))
      tbody.append(tr)
    }
  } catch (e) { $('public-error').textContent = t('error.prefix', { message: e.message }) }
}

I18N.choose()
I18N.toggle($('lang'), () => show())
show()
