import { RuleSetDocSchema, type RuleSetDoc, type RuleSetDocInput } from './ruleset.ts'

/**
 * Built-in rule sets, numbers exactly as in shared/reference/clinical-thresholds.md.
 * Each one's provenance says which numbers the reference saw only in secondary
 * sources (⚠) or could not confirm (✖).
 */
const accAha2017: RuleSetDocInput = {
  id: 'acc-aha-2017',
  version: '1.0.0',
  publisher: 'American College of Cardiology / American Heart Association',
  citation: 'Whelton PK et al. 2017 ACC/AHA Guideline for the Prevention, Detection, Evaluation, and Management of High Blood Pressure in Adults. Hypertension 2018;71:1269. Crisis row: AHA "Understanding Blood Pressure Readings" chart.',
  effectiveDate: '2017-11-13',
  provenance: 'Category cut-offs seen in secondary sources (dentalknowledge.in, droracle.ai) ⚠; the hypertensive-crisis row (>180 and/or >120) comes from a mirror of the AHA chart ⚠. The 2025 AHA/ACC guideline keeps the four categories ⚠ and calls >180/120 severe hypertension ✔. Bands are half-open; the category is the higher of the SBP and DBP categories ⚠ (both guidelines).',
  notes: 'Office-reading categories applied to single wearable readings; the 2025 AHA/ACC guideline advises against relying on cuffless devices for diagnosis.',
  audience: { kind: 'all' },
  rules: [{
    id: 'bp-category', kind: 'classification',
    title: { en: 'Blood pressure', 'zh-CN': '血压' },
    categories: [
      { id: 'normal', title: { en: 'normal', 'zh-CN': '正常' } },
      { id: 'elevated', title: { en: 'elevated', 'zh-CN': '血压升高' }, sys: { op: '>=', value: 120 } },
      { id: 'stage1', title: { en: 'stage 1 hypertension', 'zh-CN': '1期高血压' }, sys: { op: '>=', value: 130 }, dia: { op: '>=', value: 80 } },
      { id: 'stage2', title: { en: 'stage 2 hypertension', 'zh-CN': '2期高血压' }, sys: { op: '>=', value: 140 }, dia: { op: '>=', value: 90 } },
      { id: 'crisis', title: { en: 'hypertensive crisis', 'zh-CN': '高血压危象' }, sys: { op: '>', value: 180 }, dia: { op: '>', value: 120 } },
    ],
    alertOn: { stage2: 'warning', crisis: 'critical' },
    clear: { hysteresis: 0, holdDownS: 300 },
    cooldownS: 600,
  }],
}

const esh2023: RuleSetDocInput = {
  id: 'esh-2023',
  version: '1.0.0',
  publisher: 'European Society of Hypertension',
  citation: 'Mancia G et al. 2023 ESH Guidelines for the management of arterial hypertension. J Hypertens 2023;41:1874. Same cut-offs as ESC/ESH 2018 (Williams B et al., Eur Heart J 2018;39:3021).',
  effectiveDate: '2023-06-21',
  provenance: 'Cut-offs seen in secondary sources (epocrates, droracle.ai, clinit.app) ⚠. Isolated systolic hypertension ≥140 and <90 confirmed in the ESH-ESC 2007 text ✔. The isolated diastolic hypertension row (<140 and ≥90) is unconfirmed ✖ and raises only an info alert.',
  audience: { kind: 'all' },
  rules: [{
    id: 'bp-grade', kind: 'classification',
    title: { en: 'Blood pressure', 'zh-CN': '血压' },
    categories: [
      { id: 'optimal', title: { en: 'optimal', 'zh-CN': '理想血压' } },
      { id: 'normal', title: { en: 'normal', 'zh-CN': '正常血压' }, sys: { op: '>=', value: 120 }, dia: { op: '>=', value: 80 } },
      { id: 'high-normal', title: { en: 'high-normal', 'zh-CN': '正常高值' }, sys: { op: '>=', value: 130 }, dia: { op: '>=', value: 85 } },
      { id: 'grade1', title: { en: 'grade 1 hypertension', 'zh-CN': '1级高血压' }, sys: { op: '>=', value: 140 }, dia: { op: '>=', value: 90 } },
      { id: 'grade2', title: { en: 'grade 2 hypertension', 'zh-CN': '2级高血压' }, sys: { op: '>=', value: 160 }, dia: { op: '>=', value: 100 } },
      { id: 'grade3', title: { en: 'grade 3 hypertension', 'zh-CN': '3级高血压' }, sys: { op: '>=', value: 180 }, dia: { op: '>=', value: 110 } },
    ],
    alertOn: { grade2: 'warning', grade3: 'critical' },
    clear: { hysteresis: 0, holdDownS: 300 },
    cooldownS: 600,
  }, {
    id: 'isolated-systolic', kind: 'threshold', severity: 'info',
    title: { en: 'Isolated systolic hypertension', 'zh-CN': '单纯收缩期高血压' },
    when: [{ metric: 'sys', op: '>=', value: 140 }, { metric: 'dia', op: '<', value: 90 }],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 3600,
  }, {
    id: 'isolated-diastolic', kind: 'threshold', severity: 'info',
    title: { en: 'Isolated diastolic hypertension (unconfirmed definition)', 'zh-CN': '单纯舒张期高血压（定义未经证实）' },
    when: [{ metric: 'sys', op: '<', value: 140 }, { metric: 'dia', op: '>=', value: 90 }],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 3600,
  }],
}

const china2018: RuleSetDocInput = {
  id: 'china-2018',
  version: '1.0.0',
  publisher: '中国高血压防治指南修订委员会 (Chinese Hypertension League)',
  citation: '中国高血压防治指南 2018 年修订版. English version: J Geriatr Cardiol 2019;16:182.',
  effectiveDate: '2018-12-01',
  provenance: 'Table seen in secondary sources (medtranslation.cn, bluu.cn) ⚠; NHC guidance from 2020 confirms 正常高值 120–139/80–89 and the 140/90 threshold ✔. vitalmesh applies the 2018 guideline, not the 2022 中国高血压临床实践指南 (≥130/80), because the NHC reaffirmed 140/90 (news reports ⚠). 单纯舒张期高血压 is unconfirmed ✖ and not included.',
  audience: { kind: 'all' },
  rules: [{
    id: 'bp-grade', kind: 'classification',
    title: { en: 'Blood pressure', 'zh-CN': '血压' },
    categories: [
      { id: 'normal', title: { en: 'normal', 'zh-CN': '正常血压' } },
      { id: 'high-normal', title: { en: 'high-normal', 'zh-CN': '正常高值' }, sys: { op: '>=', value: 120 }, dia: { op: '>=', value: 80 } },
      { id: 'grade1', title: { en: 'grade 1 hypertension', 'zh-CN': '1级高血压' }, sys: { op: '>=', value: 140 }, dia: { op: '>=', value: 90 } },
      { id: 'grade2', title: { en: 'grade 2 hypertension', 'zh-CN': '2级高血压' }, sys: { op: '>=', value: 160 }, dia: { op: '>=', value: 100 } },
      { id: 'grade3', title: { en: 'grade 3 hypertension', 'zh-CN': '3级高血压' }, sys: { op: '>=', value: 180 }, dia: { op: '>=', value: 110 } },
    ],
    alertOn: { grade2: 'warning', grade3: 'critical' },
    clear: { hysteresis: 0, holdDownS: 300 },
    cooldownS: 600,
  }, {
    id: 'isolated-systolic', kind: 'threshold', severity: 'info',
    title: { en: 'Isolated systolic hypertension', 'zh-CN': '单纯收缩期高血压' },
    when: [{ metric: 'sys', op: '>=', value: 140 }, { metric: 'dia', op: '<', value: 90 }],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 3600,
  }],
}

const homeAverages: RuleSetDocInput = {
  id: 'home-bp-average',
  version: '1.0.0',
  publisher: 'ESC/ESH 2018, ESH 2023, China 2018 (home-monitoring thresholds)',
  citation: 'Home BP hypertension threshold 135/85 (average): ESC/ESH 2018 and ESH 2023; KSH 2013 Table 6 ✔ gives identical values; NHC guidance: home ≥135/85 averaged over 5–7 days ✔.',
  effectiveDate: '2018-08-25',
  provenance: 'European values ✔ via KSH 2013 Table 6, UpToDate excerpt ⚠; Chinese values bohe.cn ⚠, NHC ✔. The ACC/AHA equivalent is 130/80 ✔ (2017 Table 11). The thresholds apply to averages taken under a protocol; the 7-day window and the minimum of 12 readings are vitalmesh choices.',
  audience: { kind: 'all' },
  rules: [{
    id: 'home-average', kind: 'average', severity: 'warning',
    title: { en: 'Home blood pressure average above 135/85', 'zh-CN': '家庭血压平均值高于 135/85' },
    windowS: 7 * 86400, minReadings: 12,
    any: [{ metric: 'sys', op: '>=', value: 135 }, { metric: 'dia', op: '>=', value: 85 }],
    clear: { hysteresis: 2, holdDownS: 86400 }, cooldownS: 86400,
  }],
}

const wearableHr: RuleSetDocInput = {
  id: 'wearable-hr',
  version: '1.0.0',
  publisher: 'Wearable heart-rate notification defaults (Apple Watch)',
  citation: 'Apple Support HT208931: notification when heart rate stays above or below a chosen BPM while the user appears inactive for 10 minutes.',
  effectiveDate: '2017-09-19',
  provenance: '10 minutes while inactive ✔ (HT208931). Default high threshold 120 bpm from watchOS 4-era articles ⚠. Default low threshold 40 bpm is unconfirmed ✖ (low choices 40/45/50 ⚠). The 10 minutes must be covered by readings no more than 5 minutes apart (maxGapS 300): a vitalmesh heuristic, not from the source.',
  audience: { kind: 'all' },
  rules: [{
    id: 'hr-high-rest', kind: 'sustained', severity: 'warning',
    title: { en: 'High heart rate at rest', 'zh-CN': '静息心率过高' },
    when: [{ metric: 'hr', op: '>', value: 120 }, { activity: ['rest', 'sleep'] }], forS: 600, maxGapS: 300,
    skipActivities: ['moderate', 'vigorous'],
    clear: { hysteresis: 5, holdDownS: 120 }, cooldownS: 600,
  }, {
    id: 'hr-low-rest', kind: 'sustained', severity: 'warning',
    title: { en: 'Low heart rate at rest', 'zh-CN': '静息心率过低' },
    when: [{ metric: 'hr', op: '<', value: 40 }, { activity: ['rest', 'sleep'] }], forS: 600, maxGapS: 300,
    skipActivities: ['moderate', 'vigorous'],
    clear: { hysteresis: 5, holdDownS: 120 }, cooldownS: 600,
  }],
}

const news2: RuleSetDocInput = {
  id: 'news2-subscores',
  version: '1.0.0',
  publisher: 'Royal College of Physicians',
  citation: 'Royal College of Physicians. National Early Warning Score (NEWS) 2, 2017. Chart 1 (SBP and pulse bands) and Chart 4 (response).',
  effectiveDate: '2017-12-19',
  provenance: 'Bands from mirrors of RCP Charts 1 and 4 ✔ and an RCP Journals table ✔, applied as ordered ≤ tests.',
  notes: 'This is NOT NEWS2. The aggregate NEWS2 needs all seven parameters (respiration rate, SpO2, supplemental oxygen, temperature, systolic BP, pulse, consciousness); vitalmesh sees only systolic BP and pulse and computes those two sub-scores. A sub-score of 3 in a single parameter calls for urgent review (Chart 4).',
  audience: { kind: 'all' },
  rules: [{
    id: 'single-parameter-3', kind: 'score', severity: 'warning',
    title: { en: 'NEWS2 sub-score of 3 (systolic BP or pulse)', 'zh-CN': 'NEWS2 单项评分为 3（收缩压或脉搏）' },
    bands: {
      sys: [{ upTo: 90, points: 3 }, { upTo: 100, points: 2 }, { upTo: 110, points: 1 }, { upTo: 219, points: 0 }, { upTo: null, points: 3 }],
      hr: [{ upTo: 40, points: 3 }, { upTo: 50, points: 1 }, { upTo: 90, points: 0 }, { upTo: 110, points: 1 }, { upTo: 130, points: 2 }, { upTo: null, points: 3 }],
    },
    anySubScoreAtLeast: 3,
    // NEWS2 scores patients at rest; a pulse of 150 while exercising is not an early warning (vitalmesh choice)
    skipActivities: ['moderate', 'vigorous'],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 600,
  }],
}

/**
 * The dangerous ends no default covered: low blood pressure and extreme single heart rates.
 * No guideline table gives these for wearables; each number's provenance says where it comes from.
 */
const safetyNet: RuleSetDocInput = {
  id: 'vitalmesh-safety',
  version: '1.0.0',
  publisher: 'vitalmesh project (heuristics, not a guideline)',
  citation: 'shared/reference/clinical-thresholds.md §1 (hypotension: conventional cut-off SBP < 90 or DBP < 60, no guideline table) and §3 (NEWS2 pulse bands: ≤40 and ≥131 score 3).',
  effectiveDate: '2026-12-01',
  provenance: 'PROJECT HEURISTICS. Hypotension SBP < 90 or DBP < 60: the conventional cut-off ⚠, no guideline table (reference §1). Single heart rate ≤ 40 bpm: the NEWS2 band that scores 3 ✔ (reference §3), applied to one wearable reading at any activity. Single heart rate > 150 bpm outside moderate or vigorous activity: a vitalmesh choice above the NEWS2 ≥131 band (3 points) ✔, chosen so that ordinary exertion does not alarm; no source gives it. Severity warning for all: none of these is an emergency on one wearable reading.',
  notes: 'Readings in motion or with low confidence are evaluated too; their messages say so.',
  audience: { kind: 'all' },
  rules: [{
    id: 'low-systolic', kind: 'threshold', severity: 'warning', concern: 'bp-low',
    title: { en: 'Low blood pressure', 'zh-CN': '血压偏低' },
    when: [{ metric: 'sys', op: '<', value: 90 }],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 600,
  }, {
    id: 'low-diastolic', kind: 'threshold', severity: 'warning', concern: 'bp-low',
    title: { en: 'Low blood pressure', 'zh-CN': '血压偏低' },
    when: [{ metric: 'dia', op: '<', value: 60 }],
    clear: { hysteresis: 0, holdDownS: 300 }, cooldownS: 600,
  }, {
    id: 'hr-very-low', kind: 'threshold', severity: 'warning', concern: 'hr-low',
    title: { en: 'Very low heart rate', 'zh-CN': '心率过低' },
    when: [{ metric: 'hr', op: '<=', value: 40 }],
    clear: { hysteresis: 3, holdDownS: 300 }, cooldownS: 600,
  }, {
    id: 'hr-very-high', kind: 'threshold', severity: 'warning', concern: 'hr-high',
    title: { en: 'Very high heart rate', 'zh-CN': '心率过快' },
    when: [{ metric: 'hr', op: '>', value: 150 }],
    skipActivities: ['moderate', 'vigorous'],
    clear: { hysteresis: 5, holdDownS: 300 }, cooldownS: 600,
  }],
}

/** Residents the coordination centre marks high-risk (condition `high-risk`) whose devices fall silent. */
const lostContact: RuleSetDocInput = {
  id: 'vitalmesh-lost-contact',
  version: '1.0.0',
  publisher: 'vitalmesh project (heuristic, not a guideline)',
  citation: 'Lost-contact alerts as users of remote-monitoring systems ask for them (issue 16); no clinical source gives the duration.',
  effectiveDate: '2026-12-01',
  provenance: 'PROJECT HEURISTIC: 6 hours without a reading from any device of a resident marked high-risk. The duration is a vitalmesh choice; a hospital may set a personal one (override forS).',
  audience: { kind: 'cohort', conditions: ['high-risk'] },
  rules: [{
    id: 'lost-contact', kind: 'noData', severity: 'warning', forS: 6 * 3600,
    title: { en: 'Lost contact', 'zh-CN': '失去联系' },
    clear: { hysteresis: 0, holdDownS: 0 }, cooldownS: 0,
  }],
}

export const BUILTIN_RULE_SETS: RuleSetDoc[] = [accAha2017, esh2023, china2018, homeAverages, wearableHr, news2, safetyNet, lostContact].map((d) => RuleSetDocSchema.parse(d))

/** Active on a fresh node until an operator activates something else. */
export const DEFAULT_ACTIVE = ['acc-aha-2017', 'wearable-hr', 'vitalmesh-safety', 'vitalmesh-lost-contact']
