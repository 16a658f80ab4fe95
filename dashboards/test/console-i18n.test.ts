import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import vm from 'node:vm'

const DIR = join(import.meta.dirname, '..', 'console')
const read = (f: string) => readFileSync(join(DIR, f), 'utf8')

/** The console's message tables: both languages say everything, and every key the markup and scripts use exists. */
describe('console messages in zh-CN and en', () => {
  const ctx: Record<string, unknown> = { localStorage: { getItem: () => null, setItem: () => {} }, navigator: { language: 'en-US' } }
  vm.runInNewContext(read('i18n.js') + '\nthis.MESSAGES = MESSAGES; this.I18N = I18N', ctx)
  const M = ctx.MESSAGES as Record<'en' | 'zh-CN', Record<string, string>>

  it('has the same keys, with the same placeholders, in both languages', () => {
    expect(Object.keys(M['zh-CN']).sort()).toEqual(Object.keys(M.en).sort())
    const vars = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()
    for (const k of Object.keys(M.en)) expect([k, vars(M['zh-CN'][k]!)]).toEqual([k, vars(M.en[k]!)])
  })

  it('knows every key the pages and scripts name literally', () => {
    const used = new Set<string>()
    for (const f of ['index.html', 'public.html']) for (const m of read(f).matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) used.add(m[1]!)
    for (const f of ['console.js', 'views.js', 'public.js']) for (const m of read(f).matchAll(/\bt\('([a-zA-Z0-9.-]+)'/g)) used.add(m[1]!)
    expect([...used].filter((k) => !(k in M.en))).toEqual([])
    expect(used.size).toBeGreaterThan(100)
  })

  it('has no English text in the markup outside the message table', () => {
    for (const f of ['index.html', 'public.html']) {
      const text = read(f).replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>|<title[^>]*>[^<]*<\/title>/g, '').replace(/<[^>]+>/g, ' ')
      const words = text.split(/\s+/).filter((w) => /[A-Za-z]{2,}/.test(w) && !['vitalmesh', 'English'].includes(w))
      expect([f, words]).toEqual([f, []])
    }
  })

  it('chooses zh-CN for any zh browser language, en otherwise', () => {
    const I18N = ctx.I18N as { choose(l?: string): string }
    expect(I18N.choose('zh-Hans-CN')).toBe('zh-CN')
    expect(I18N.choose('zh')).toBe('zh-CN')
    expect(I18N.choose('de-DE')).toBe('en')
    expect(I18N.choose()).toBe('en')
  })
})
